"""Face crops (uint8, H x W) -> model input tensors, with the training augmentations.

One function serves training, evaluation and prediction, so the three never drift apart.
Order: resize to the model's crop size -> augment (train only: affine, synthetic headset,
webcam degradations, flip) -> input mode (occlude / keep the
visible half) -> random erasing (train only) -> replicate to the model's channels -> normalise with the model's mean/std.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..augment import Augment
from ..occlusion import apply_input_mode, paint_headset


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


def _photometric(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Webcam-like degradations of faces x (N, 1, H, W), 0-255, each image with probability p.

    Each degradation is drawn independently, so most degraded faces get two or three of them.
    JPEG goes through OpenCV's encoder (the real artefacts, not an imitation); the rest is torch.
    """
    n, _, h, w = x.shape
    u = lambda: torch.rand(n, generator=g)  # noqa: E731
    v = lambda t: t.view(n, 1, 1, 1)  # noqa: E731
    on = u() < p
    y = x / 255.0
    # gamma 0.6-1.6 (log-uniform) and contrast 0.6-1.4 around the face's mean, brightness +-0.1
    gamma = torch.exp((u() * 2 - 1) * math.log(1.6))
    y = y.clamp_min(1e-4) ** v(gamma)
    mean = y.mean((1, 2, 3), keepdim=True)
    y = (y - mean) * v(0.6 + 0.8 * u()) + mean + v((u() * 2 - 1) * 0.1)
    # down-then-up scaling (a far or low-resolution camera): to 50-100% of the side, half the time
    sc = torch.where(u() < 0.5, 0.5 + 0.5 * u(), torch.ones(n))
    blur = torch.where(u() < 0.3, 0.3 + 0.7 * u(), torch.zeros(n))
    noise = torch.where(u() < 0.5, u() * 8 / 255.0, torch.zeros(n))
    jpeg = torch.where(u() < 0.3, 25 + 65 * u(), torch.zeros(n))
    y = y.clamp(0, 1) * 255
    out = []
    for i in range(n):
        yi = y[i:i + 1]
        if not on[i]:
            out.append(x[i:i + 1])
            continue
        if sc[i] < 1:
            small = (max(8, int(round(h * float(sc[i])))), max(8, int(round(w * float(sc[i])))))
            yi = F.interpolate(F.interpolate(yi, size=small, mode="area"), size=(h, w), mode="bilinear",
                               align_corners=False)
        if blur[i] > 0:
            s = float(blur[i])
            k = torch.exp(-(torch.arange(-2, 3, dtype=yi.dtype) ** 2) / (2 * s * s))
            k = k / k.sum()
            yi = F.conv2d(F.pad(yi, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
            yi = F.conv2d(F.pad(yi, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
        if noise[i] > 0:
            yi = yi + torch.randn(yi.shape, generator=g) * float(noise[i]) * 255
        if jpeg[i] > 0:
            import cv2
            arr = yi[0, 0].clamp(0, 255).round().to(torch.uint8).numpy()
            ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg[i])])
            yi = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)).to(yi.dtype)[None, None]
        out.append(yi.clamp(0, 255))
    return torch.cat(out)


def _random_erase(x: torch.Tensor, p: float, g: torch.Generator, area=(0.02, 0.33), aspect=(0.3, 3.3)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): each face (N, 1, H, W), 0-255, with probability p, gets one rectangle of
    2-33% of its area (aspect 0.3-3.3, log-uniform) replaced by uniform noise, so no single part of the visible
    face can carry the answer alone. torchvision's RandomErasing draws from the global generator; this draws from
    `g`, so a resumed run erases what an uninterrupted one did."""
    n, _, h, w = x.shape
    u = lambda: torch.rand(n, generator=g)  # noqa: E731
    on = u() < p
    a = (area[0] + (area[1] - area[0]) * u()) * h * w
    r = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u())
    eh = torch.sqrt(a * r).round().clamp(1, h).long()
    ew = torch.sqrt(a / r).round().clamp(1, w).long()
    top = (u() * (h - eh + 1)).floor().long()
    left = (u() * (w - ew + 1)).floor().long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)) & on.view(n, 1, 1))
    noise = torch.rand(x.shape, generator=g, dtype=x.dtype) * 255
    return torch.where(box[:, None], noise, x)


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
        if augment.headset:   # painted before the camera degradations: the headset is in the scene
            x = paint_headset(x, tuple(augment.headset_edge), g, augment.headset)
        if augment.photometric:
            x = _photometric(x, augment.photometric, g)
        if augment.flip:
            flip = torch.rand(x.shape[0], generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if flip_all:
        x = x.flip(-1)
    x = apply_input_mode(x, cfg.input_mode, cfg.occlusion)
    if augment is not None and augment.erase:   # after the input mode: erase within what the model sees
        x = _random_erase(x, augment.erase, g)
    if cfg.in_chans != 1:
        x = x.expand(-1, cfg.in_chans, -1, -1)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()
