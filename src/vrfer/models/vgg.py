"""The paper's two backbones (VGG-face, VGG-f) and Barsoum et al.'s VGG-13 for FER+.

Georgescu & Ionescu (2019), Section 3.1, keep the conv layers of each pretrained network, replace its
fully connected layers by one max-pooling layer and put a new 8-way softmax layer on top (weights drawn
from N(0, 0.1)). Dropout is added after some conv layers. Here the max-pooling layer pools over the
whole final feature map (global max pooling), which gives one 512- (VGG-face) or 256-vector (VGG-f)
per image, so the same weights take a 224x224 face, a 224x224 face with the upper half blacked out, or
only its visible lower half (112x224).

The network's last pooling layer (pool5) is folded into that global max pool: the max over the pool5
map equals the max over the conv5 map whenever pool5 covers every position (it does for the paper's
224x224 input), and leaving pool5 out keeps odd-sized maps (e.g. the 7x14 map of a 112x224 input)
from losing their last row.

Layer names follow the public MatConvNet releases (conv1_1 ... conv5_3 for VGG-face; conv1 ... conv5,
norm1, norm2 for VGG-f), so `vrfer.models.importers` can copy their weights by name:
`model.features.conv4_1`, `model.backbone_convs()`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .registry import ModelConfig, register

# VGG-16 (Simonyan & Zisserman 2015, configuration D), the layout of VGG-face (Parkhi et al. 2015)
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# Section 3.1: six dropout layers after each conv layer from block 4 on, 0.30 rising by 0.05 to 0.55
VGG_FACE_DROPOUT = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55)
# Section 3.1: three dropout layers after conv3, conv4, conv5 of VGG-f, rate 0.2
VGG_F_DROPOUT = (0.2, 0.2, 0.2)
HEAD_STD = 0.1  # Section 3.1: new softmax layer initialised from N(0, 0.1)


def _init_fresh(module: nn.Module) -> None:
    """Fresh (not imported) conv weights: He init as torchvision's VGG; biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)


def _init_head(linear: nn.Linear, std: float) -> None:
    nn.init.normal_(linear.weight, 0.0, std)
    nn.init.zeros_(linear.bias)


class _GlobalMaxHead(nn.Module):
    """Shared by VGG-face and VGG-f: conv stack -> global max pool -> new linear classifier."""

    features: nn.Sequential

    def backbone_convs(self) -> list[tuple[str, nn.Conv2d]]:
        """The conv layers in order, with their names in the public weight releases."""
        return [(n, m) for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class VGGFace(_GlobalMaxHead):
    """VGG-face as in Section 3.1: VGG-16's 13 conv layers (3x3, pad 1) + ReLU, max-pool 2/2 after
    blocks 1-4, dropout after conv4_1 ... conv5_3 (0.30 ... 0.55), global max pool, linear(512, 8)."""

    def __init__(self, num_classes: int = 8, in_chans: int = 3, dropout=VGG_FACE_DROPOUT,
                 head_std: float = HEAD_STD):
        super().__init__()
        dropout = tuple(float(p) for p in dropout)
        n_late = sum(len(b) for b in VGG16_BLOCKS[3:])
        if len(dropout) != n_late:
            raise ValueError(f"vgg-face: dropout needs {n_late} rates (one per conv layer of blocks 4-5)")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin, k = in_chans, 0
        for b, widths in enumerate(VGG16_BLOCKS, 1):
            for i, w in enumerate(widths, 1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(cin, w, 3, padding=1)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=True)
                if b >= 4:
                    layers[f"drop{b}_{i}"] = nn.Dropout(dropout[k])
                    k += 1
                cin = w
            if b < len(VGG16_BLOCKS):
                layers[f"pool{b}"] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_fresh(self.features)
        _init_head(self.classifier, head_std)


class LRN(nn.LocalResponseNorm):
    """MatConvNet's `normalize` layer, param [N kappa alpha beta]:
    y = x / (kappa + alpha * sum_{N channels} x^2)^beta. PyTorch divides its alpha by the window
    size, so alpha_torch = alpha_mcn * N. The window is c-2..c+2 for N=5 in both."""

    def __init__(self, n: int = 5, kappa: float = 1.0, alpha_mcn: float = 0.0001 / 5, beta: float = 0.75):
        super().__init__(size=n, alpha=alpha_mcn * n, beta=beta, k=kappa)


class VGGF(_GlobalMaxHead):
    """VGG-f (Chatfield et al. 2014, MatConvNet's imagenet-vgg-f) conv layers as in Section 3.1:
    conv1 64x11x11/4 + ReLU + LRN + max-pool 3/2; conv2 256x5x5 pad 2 + ReLU + LRN + max-pool 3/2;
    conv3-conv5 256x3x3 pad 1 + ReLU, each followed by dropout 0.2; global max pool, linear(256, 8).

    MatConvNet pads pool1 by one row/column at the bottom/right ([0 1 0 1]), which is what PyTorch's
    ceil_mode does (224 -> conv1 54 -> pool1 27 -> pool2 13, as the original's fc6 expects). pool2 has no
    padding in MatConvNet; it uses ceil_mode here too, which gives the same windows whenever its input
    is odd (27 at 224x224, 13x27 for the 112x224 visible half) and, for small crops, keeps the last
    row instead of dropping it: a 24x48 visible half of a 48x48 face gives a 1x2 map instead of none."""

    def __init__(self, num_classes: int = 8, in_chans: int = 3, dropout=VGG_F_DROPOUT,
                 head_std: float = HEAD_STD):
        super().__init__()
        dropout = tuple(float(p) for p in dropout)
        if len(dropout) != 3:
            raise ValueError("vgg-f: dropout needs 3 rates (after conv3, conv4, conv5)")
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_chans, 64, 11, stride=4)),
            ("relu1", nn.ReLU(inplace=True)),
            ("norm1", LRN()),
            ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(64, 256, 5, padding=2)),
            ("relu2", nn.ReLU(inplace=True)),
            ("norm2", LRN()),
            ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(256, 256, 3, padding=1)),
            ("relu3", nn.ReLU(inplace=True)),
            ("drop3", nn.Dropout(dropout[0])),
            ("conv4", nn.Conv2d(256, 256, 3, padding=1)),
            ("relu4", nn.ReLU(inplace=True)),
            ("drop4", nn.Dropout(dropout[1])),
            ("conv5", nn.Conv2d(256, 256, 3, padding=1)),
            ("relu5", nn.ReLU(inplace=True)),
            ("drop5", nn.Dropout(dropout[2])),
        ]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(256, num_classes)
        _init_fresh(self.features)
        _init_head(self.classifier, head_std)


class VGG13Barsoum(nn.Module):
    """VGG-13 of Barsoum et al. 2016 (Microsoft's FERPlus src/models.py), for 64x64 grayscale faces:
    [conv64, conv64], [conv128, conv128], [conv256 x3], [conv256 x3] (3x3, pad 1, ReLU), each block
    followed by max-pool 2/2 and dropout 0.25; fc 1024 + ReLU + dropout 0.5, twice; fc 8. Glorot-uniform
    init as in CNTK. No batch norm (the original has none).

    The 4x4x256 map of a 64x64 input feeds fc5 directly. For other input shapes (the visible lower
    half, 32x64, or another image_size) the final map is first resampled to 4x4 by adaptive average
    pooling, which is the identity at 64x64, so one set of weights serves every input mode."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1, widths=((64, 64), (128, 128), (256,) * 3, (256,) * 3),
                 fc: int = 1024, conv_dropout: float = 0.25, fc_dropout: float = 0.5):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = in_chans
        for b, ws in enumerate(widths, 1):
            for i, w in enumerate(ws, 1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(cin, w, 3, padding=1)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=True)
                cin = w
            layers[f"pool{b}"] = nn.MaxPool2d(2, 2)
            layers[f"drop{b}"] = nn.Dropout(conv_dropout)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.head = nn.Sequential(OrderedDict([
            ("fc5", nn.Linear(cin * 16, fc)), ("relu5", nn.ReLU(inplace=True)), ("drop5", nn.Dropout(fc_dropout)),
            ("fc6", nn.Linear(fc, fc)), ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(fc_dropout)),
        ]))
        self.classifier = nn.Linear(fc, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def backbone_convs(self) -> list[tuple[str, nn.Conv2d]]:
        return [(n, m) for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-2:] != (4, 4):
            x = self.pool(x)
        return self.classifier(self.head(x.flatten(1)))



# MatConvNet's vgg-face.mat / vgg_face_dag.pth: meta.normalization.averageImage (RGB, 0-255), no scaling
VGG_FACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)
# imagenet-vgg-f.mat's averageImage (a 224x224x3 image) averaged per channel, as imagenet_matconvnet_vgg_f_dag
VGG_F_MEAN = (122.80329895019531, 114.88525390625, 101.57212829589844)


@register(ModelConfig(
    name="vgg-face", arch="vgg-face", image_size=224, in_chans=3, mean=VGG_FACE_MEAN, std=(1.0, 1.0, 1.0),
    description="paper's VGG-face (Sec. 3.1): VGG-16's 13 conv layers, dropout .30-.55 after conv4_1-conv5_3, "
                "global max pool, 8-way linear; load vgg-face.mat / vgg_face_dag.pth with backbone_weights="))
def vgg_face(num_classes: int = 8, in_chans: int = 3, **kw) -> VGGFace:
    return VGGFace(num_classes, in_chans, **kw)


@register(ModelConfig(
    name="vgg-f", arch="vgg-f", image_size=224, in_chans=3, mean=VGG_F_MEAN, std=(1.0, 1.0, 1.0),
    description="paper's VGG-f (Sec. 3.1): Chatfield 2014 conv1-conv5 with LRN, dropout .2 after conv3-5, "
                "global max pool, 8-way linear; load imagenet-vgg-f.mat / *_vgg_f_dag.pth with backbone_weights="))
def vgg_f(num_classes: int = 8, in_chans: int = 3, **kw) -> VGGF:
    return VGGF(num_classes, in_chans, **kw)


@register(ModelConfig(
    name="vgg13-barsoum", arch="vgg13-barsoum", image_size=64, in_chans=1, mean=(128.0,), std=(64.0,),
    description="Barsoum et al. 2016 FER+ VGG-13 (10 conv, fc 1024x2, dropout .25/.5), 64x64 grayscale, "
                "from scratch; input standardised (x-128)/64 (Microsoft's code feeds raw pixels)"))
def vgg13_barsoum(num_classes: int = 8, in_chans: int = 1, **kw) -> VGG13Barsoum:
    return VGG13Barsoum(num_classes, in_chans, **kw)
