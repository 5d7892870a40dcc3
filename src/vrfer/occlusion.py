"""The paper's occlusion of the upper face, and the "visible half" input mode.

Georgescu & Ionescu (2019) black out the top half of the rows of the aligned face crop to simulate
a VR headset. Handing the model only the rows that remain visible carries the same information at
about half the compute, which is what the CPU models do.
"""

from __future__ import annotations

import numpy as np
import torch

INPUT_MODES = ("full", "upper-occluded", "visible-half")


def visible_rows(height: int, fraction: float = 0.5) -> int:
    """Index of the first row that stays visible when the top `fraction` of rows is occluded."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"occlusion fraction must be in [0, 1), got {fraction}")
    return int(round(height * fraction))


def occlude_upper(images, fraction: float = 0.5):
    """Set the top `fraction` of rows to black (0). Works on numpy or torch, any leading dims (..., H, W).

    Returns a copy; the input is not modified.
    """
    top = visible_rows(images.shape[-2], fraction)
    out = images.clone() if isinstance(images, torch.Tensor) else np.array(images, copy=True)
    out[..., :top, :] = 0
    return out


def lower_half(images, fraction: float = 0.5):
    """Keep only the rows below the occluded part: (..., H, W) -> (..., H - top, W)."""
    top = visible_rows(images.shape[-2], fraction)
    return images[..., top:, :]


def apply_input_mode(images, mode: str, fraction: float = 0.5):
    """Map full face crops (..., H, W) to what a model with this input mode sees."""
    if mode == "full":
        return images
    if mode == "upper-occluded":
        return occlude_upper(images, fraction)
    if mode == "visible-half":
        return lower_half(images, fraction)
    raise ValueError(f"unknown input mode {mode!r}; expected one of {', '.join(INPUT_MODES)}")


def paint_headset(x: torch.Tensor, edge: tuple[float, float], g: torch.Generator,
                  p: float = 1.0) -> torch.Tensor:
    """Training augmentation: a synthetic headset over the top of face crops x (N, 1, H, W), 0-255.

    A real headset found by a face detector does not end exactly half way down the crop: its lower
    edge falls anywhere from ~40% to ~60% of the crop height, tilts with the head, has rounded
    corners and a dark, slightly textured surface; a strap runs off at the sides. Painting that
    (with probability p per image) teaches the model to ignore whatever part of the headset reaches
    into the rows it looks at. Returns a new tensor; deterministic for a given generator state.
    """
    n, _, h, w = x.shape
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    on = (u(n) < p).float().view(n, 1, 1, 1)
    lo, hi = edge
    bottom = (lo + (hi - lo) * u(n)) * h                      # lower edge at the centre column (rows)
    tilt = (u(n) * 2 - 1) * 0.12 * h                          # edge height difference left to right
    corner = (0.05 + 0.10 * u(n)) * h                         # how far the rounded corners lift the edge
    cols = (torch.arange(w, dtype=x.dtype) + 0.5) / w - 0.5   # -0.5 .. 0.5
    rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1) + 0.5
    lift = corner.view(n, 1) * (2 * cols.abs()).view(1, w) ** 4
    edge_row = (bottom.view(n, 1) + tilt.view(n, 1) * cols.view(1, w) - lift).view(n, 1, 1, w)
    alpha = (edge_row - rows + 0.5).clamp(0, 1) * on          # 1 inside the headset, soft 1-px border
    base = 8 + 60 * u(n).view(n, 1, 1, 1)                     # dark plastic or fabric, varying light
    shade = (u(n).view(n, 1, 1, 1) * 2 - 1) * 12 * cols.view(1, 1, 1, w)  # light falling from one side
    texture = torch.randn(n, 1, h, w, generator=g) * (2 + 5 * u(n).view(n, 1, 1, 1))
    plate = (base + shade + texture).clamp(0, 255)
    # the strap: a darker band leaving the headset at both sides, in the rows just above its edge
    strap_top = edge_row - (0.30 + 0.1 * u(n).view(n, 1, 1, 1)) * h
    strap_bot = edge_row - 0.15 * h
    side = (cols.abs() > 0.40).view(1, 1, 1, w)
    strap = ((rows > strap_top) & (rows < strap_bot) & side).float() * on
    out = x * (1 - alpha) + plate * alpha
    return out * (1 - strap) + (plate * 0.6) * strap


def hflip(images):
    """Horizontal flip, the paper's only augmentation (mirror along the width axis)."""
    if isinstance(images, torch.Tensor):
        return images.flip(-1)
    return np.ascontiguousarray(images[..., ::-1])
