"""Face crops (uint8, H x W) -> model input tensors, with the training augmentations.

One function serves training, evaluation and prediction, so the three never drift apart.
Order: resize to the model's crop size -> augment (train only) -> input mode (occlude / keep the
visible half) -> replicate to the model's channels -> normalise with the model's mean/std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .occlusion import apply_input_mode


@dataclass(frozen=True)
class Augment:
    flip: bool = True          # horizontal flips: the paper's only augmentation
    shift: float = 0.0         # max translation, fraction of the crop side (Microsoft: 0.08)
    rotate: float = 0.0        # max rotation in degrees (Microsoft: 20)
    scale: float = 0.0         # max zoom in/out, e.g. 0.05 (Microsoft: 1.05)

    @property
    def geometric(self) -> bool:
        return bool(self.shift or self.rotate or self.scale)


def _random_affine(x: torch.Tensor, aug: Augment, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=g) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    ang = u() * math.radians(aug.rotate)
    s = torch.exp(u() * math.log1p(aug.scale)) if aug.scale else torch.ones(n)
    tx, ty = u() * aug.shift * 2, u() * aug.shift * 2  # affine_grid coordinates span 2 per side
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def prepare(images, cfg, augment: Augment | None = None, generator: torch.Generator | None = None,
            flip_all: bool = False) -> torch.Tensor:
    """uint8 face crops (N, H, W) (numpy or torch) -> float input (N, C, h, w) for a model with `cfg`."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 2:
        x = x[None]
    x = x.float().unsqueeze(1)  # (N, 1, H, W), 0-255
    if x.shape[-1] != cfg.image_size or x.shape[-2] != cfg.image_size:
        x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > cfg.image_size)
    if augment is not None:
        g = generator or torch.Generator().manual_seed(0)
        if augment.geometric:
            x = _random_affine(x, augment, g)
        if augment.flip:
            flip = torch.rand(x.shape[0], generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if flip_all:
        x = x.flip(-1)
    x = apply_input_mode(x, cfg.input_mode, cfg.occlusion)
    if cfg.in_chans != 1:
        x = x.expand(-1, cfg.in_chans, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()
