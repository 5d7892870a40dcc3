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


def hflip(images):
    """Horizontal flip, the paper's only augmentation (mirror along the width axis)."""
    if isinstance(images, torch.Tensor):
        return images.flip(-1)
    return np.ascontiguousarray(images[..., ::-1])
