"""RetinaFace MobileNet-0.25 in PyTorch, for fine-tuning the shipped detector (tools/train_face_detector.py).

vrfer runs the detector as an ONNX graph (vrfer.faces.retinaface). That graph is biubug6/Pytorch_Retinaface's
network with every batch norm folded into its convolution, so this module is that network with biased
convolutions and no batch norm: `from_onnx` reads the graph's weights into it (its outputs equal the graph's),
`to_onnx` writes a graph with the same inputs and outputs back. Layers in order: a MobileNet-0.25 backbone
(stage1-3, strides 8/16/32), a 3-level feature pyramid, one SSH context module per level, and per level 1x1
heads for the face score, the box and the 5 landmarks of each of the level's 2 anchors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.1


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, leaky: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)]
    if leaky:
        layers.append(nn.LeakyReLU(LEAK))
    return nn.Sequential(*layers)


def conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet's depthwise 3x3 then pointwise 1x1."""
    return nn.Sequential(conv(cin, cin, 3, stride, groups=cin), conv(cin, cout, 1))


class SSH(nn.Module):
    """Context module: 3x3, 5x5 and 7x7 receptive fields (stacked 3x3s), concatenated."""

    def __init__(self, cin: int = 64, cout: int = 64):
        super().__init__()
        self.conv3X3 = conv(cin, cout // 2, leaky=False)
        self.conv5X5_1 = conv(cin, cout // 4)
        self.conv5X5_2 = conv(cout // 4, cout // 4, leaky=False)
        self.conv7X7_2 = conv(cout // 4, cout // 4)
        self.conv7x7_3 = conv(cout // 4, cout // 4, leaky=False)

    def forward(self, x):   # in the original graph's order, so that a written graph reads back (from_onnx)
        c3 = self.conv3X3(x)
        c5 = self.conv5X5_1(x)
        return F.relu(torch.cat([c3, self.conv5X5_2(c5), self.conv7x7_3(self.conv7X7_2(c5))], 1))


class RetinaFaceNet(nn.Module):
    """Input: (N, 3, H, W) BGR minus the mean (104, 117, 123), unscaled. Outputs, anchors in the order of
    vrfer.faces.retinaface's priors: loc (N, A, 4), conf (N, A, 2) (softmax; `logits=True` gives the raw
    scores, for training), landmarks (N, A, 10)."""

    ANCHORS = 2

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(conv(3, 8, 3, 2), conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
                                    conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))
        self.output1, self.output2, self.output3 = conv(64, 64, 1), conv(128, 64, 1), conv(256, 64, 1)
        self.merge1, self.merge2 = conv(64, 64), conv(64, 64)
        self.ssh = nn.ModuleList([SSH() for _ in range(3)])
        a = self.ANCHORS
        self.class_head = nn.ModuleList([nn.Conv2d(64, a * 2, 1) for _ in range(3)])
        self.bbox_head = nn.ModuleList([nn.Conv2d(64, a * 4, 1) for _ in range(3)])
        self.landmark_head = nn.ModuleList([nn.Conv2d(64, a * 10, 1) for _ in range(3)])

    def forward(self, x, logits: bool = False):
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        p1, p2, p3 = self.output1(c1), self.output2(c2), self.output3(c3)
        p2 = self.merge2(p2 + F.interpolate(p3, size=p2.shape[-2:], mode="nearest"))
        p1 = self.merge1(p1 + F.interpolate(p2, size=p1.shape[-2:], mode="nearest"))
        feats = [s(p) for s, p in zip(self.ssh, (p1, p2, p3))]

        def head(convs, k):
            return torch.cat([c(f).permute(0, 2, 3, 1).reshape(f.shape[0], -1, k) for c, f in zip(convs, feats)], 1)

        conf = head(self.class_head, 2)
        loc = head(self.bbox_head, 4)
        lms = head(self.landmark_head, 10)
        return loc, (conf if logits else F.softmax(conf, -1)), lms


def _conv_order(net: RetinaFaceNet, twice: bool) -> list[nn.Conv2d]:
    """The network's convolutions in an ONNX graph's node order (the original graph runs SSH's conv5X5_1 twice,
    `twice`; a graph to_onnx wrote runs it once)."""
    convs = [m for m in [*net.stage1.modules(), *net.stage2.modules(), *net.stage3.modules()]
             if isinstance(m, nn.Conv2d)]
    convs += [net.output1[0], net.output2[0], net.output3[0], net.merge2[0], net.merge1[0]]
    for s in net.ssh:
        convs += [s.conv3X3[0], s.conv5X5_1[0], s.conv5X5_2[0], *([s.conv5X5_1[0]] if twice else []),
                  s.conv7X7_2[0], s.conv7x7_3[0]]
    convs += [*net.class_head, *net.bbox_head, *net.landmark_head]
    return convs


def from_onnx(graph: bytes) -> RetinaFaceNet:
    """The network with the weights of a RetinaFace MobileNet-0.25 ONNX graph (vrfer's shipped one, or one that
    to_onnx wrote). Refuses a graph of another shape."""
    import onnx
    from onnx import numpy_helper

    from ..errors import VrferError
    model = onnx.load_from_string(graph)
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
    nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    net = RetinaFaceNet()
    convs = _conv_order(net, twice=len(nodes) == len(_conv_order(net, twice=True)))
    if len(nodes) != len(convs):
        raise VrferError(f"not a RetinaFace MobileNet-0.25 graph: {len(nodes)} convolutions, {len(convs)} expected")
    with torch.no_grad():
        for node, c in zip(nodes, convs):
            w, b = (init[alias.get(name, name)] for name in node.input[1:3])
            if tuple(w.shape) != tuple(c.weight.shape):
                raise VrferError(f"not a RetinaFace MobileNet-0.25 graph: {node.output[0]} has weights "
                                 f"{tuple(w.shape)}, {tuple(c.weight.shape)} expected")
            c.weight.copy_(torch.from_numpy(w.copy()))
            c.bias.copy_(torch.from_numpy(b.copy()))
    return net.eval()


def to_onnx(net: RetinaFaceNet, path) -> None:
    """Write the network as vrfer's detector graph: input `input` (N, 3, H, W) of any size, outputs loc, conf
    (softmax), landmarks."""
    net = net.eval()
    x = torch.zeros(1, 3, 320, 320)
    torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["loc", "conf", "landmarks"],
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "loc": {0: "n", 1: "a"},
                                    "conf": {0: "n", 1: "a"}, "landmarks": {0: "n", 1: "a"}},
                      opset_version=11, dynamo=False)
