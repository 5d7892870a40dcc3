"""vrfer-cnn: a compact VGG-style CNN sized to train on 2 CPU cores.

Fully convolutional with global average pooling, so one set of weights takes the full 48x48 face
or just its visible lower half (24x48): stage 1 trains on full faces, stage 2 fine-tunes the same
weights on the lower half, as the paper does with VGG-face.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelConfig, register


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompactCNN(nn.Module):
    """Four blocks of two 3x3 conv + BN + ReLU (widths below), max-pool between blocks, GAP, linear."""

    def __init__(self, num_classes: int = 8, in_chans: int = 1, widths=(32, 64, 128, 256), dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for i, w in enumerate(widths):
            layers += conv_bn(cin, w) + conv_bn(w, w)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


@register(ModelConfig(
    name="vrfer-cnn", arch="vrfer-cnn", image_size=48, in_chans=1, mean=(128.0,), std=(64.0,),
    description="compact 8-conv BN CNN (48-384 ch) for 2 CPU cores; 48x48 faces or their 24x48 lower half"))
def vrfer_cnn(num_classes: int = 8, in_chans: int = 1, **kw) -> CompactCNN:
    return CompactCNN(num_classes, in_chans, **{"widths": (48, 96, 192, 384), **kw})


@register(ModelConfig(
    name="vrfer-cnn-small", arch="vrfer-cnn-small", image_size=48, in_chans=1, mean=(128.0,), std=(64.0,),
    description="vrfer-cnn at 32-256 channels: faster to train, for quick experiments"))
def vrfer_cnn_small(num_classes: int = 8, in_chans: int = 1, **kw) -> CompactCNN:
    return CompactCNN(num_classes, in_chans, **{"widths": (32, 64, 128, 256), **kw})
