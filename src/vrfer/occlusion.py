"""The paper's occlusion of the upper face, and the "visible half" input mode.

Georgescu & Ionescu (2019) black out the top half of the rows of the aligned face crop to simulate
a VR headset. Handing the model only the rows that remain visible carries the same information at
about half the compute, which is what the CPU models do.

The same occlusion drawn on a photo: `draw_headset`, vrfer's synthetic VR headset over the eyes and brows of a
face box (evaluate's headset occlusion, the benchmarks' headset faces); `paint_headset` paints one on training
crops (randomised, on the crop itself). vrfer.faces.headsets draws real-looking headsets in scenes.
"""

from __future__ import annotations

import numpy as np
import torch

from .faces.geometry import Box, Face

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


# ------------------------------------------------------------------------------------------- headset

def _box_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    """Face box from 5 RetinaFace landmarks (or 68 iBUG points), by this detector's median geometry:
    eyes at 0.375 of the box height, eye distance 0.464 of its width, width 0.73 of its height."""
    pts = np.asarray(pts, dtype=float)
    if pts.shape == (68, 2):
        le, re = pts[36:42].mean(0), pts[42:48].mean(0)
    elif pts.shape[0] >= 2 and pts.shape[1] == 2:
        le, re = pts[0], pts[1]
    else:
        raise ValueError(f"landmarks of shape {pts.shape}: expected (5, 2) or (68, 2)")
    d = float(np.hypot(*(re - le)))
    w = d / 0.464
    h = w / 0.73
    ex, ey = (le + re) / 2
    return ex - 0.485 * w, ey - 0.375 * h, w, h


def headset_polygon(box: Box) -> tuple[tuple[int, int], tuple[int, int]]:
    """Corners (top-left, bottom-right) of the synthetic headset for a face box: over the eyes and
    brows, from a little above the box to half way down it (the nose tip and mouth stay visible),
    a little wider than the face."""
    x, y, w, h = box
    return ((int(round(x - 0.10 * w)), int(round(y - 0.10 * h))),
            (int(round(x + 1.10 * w)), int(round(y + 0.50 * h))))


def draw_headset(image: np.ndarray, box_or_landmarks, color=(28, 28, 32), strap: bool = True,
                 style: str = "rounded") -> np.ndarray:
    """A copy of `image` with a synthetic VR headset over the eyes and brows: a dark rounded rectangle
    over the upper half of the face box (from 0.1 above it to half way down, 10% wider than the face
    on each side), with a strap towards the sides of the head.

    box_or_landmarks: a face box (x, y, w, h), a `Face`, or landmarks ((5, 2) RetinaFace order or
    (68, 2)). style "plain": a plain rectangle, no strap and no seam. Works on gray (H, W) and
    BGR (H, W, 3) images."""
    import cv2
    if isinstance(box_or_landmarks, Face):
        box = box_or_landmarks.box
    else:
        arr = np.asarray(box_or_landmarks, dtype=float)
        box = _box_from_landmarks(arr) if arr.ndim == 2 else tuple(arr.tolist())
    if len(box) != 4:
        raise ValueError("draw_headset needs a box (x, y, w, h) or landmarks")
    x, y, w, h = box
    out = np.array(image, copy=True)
    col = int(round(float(np.mean(color)))) if out.ndim == 2 else tuple(int(c) for c in color)
    (x0, y0), (x1, y1) = headset_polygon(box)
    if style == "plain":
        cv2.rectangle(out, (x0, y0), (x1, y1), col, -1)
        return out
    strap_col = (int(round(0.6 * col)) if out.ndim == 2 else tuple(int(0.6 * c) for c in col))
    if strap:
        sy0, sy1 = int(round(y + 0.12 * h)), int(round(y + 0.26 * h))
        cv2.rectangle(out, (int(round(x - 0.35 * w)), sy0), (int(round(x + 1.35 * w)), sy1), strap_col, -1)
    r = max(1, int(round(0.12 * min(x1 - x0, y1 - y0))))
    # rounded rectangle: two rectangles and four discs
    cv2.rectangle(out, (x0 + r, y0), (x1 - r, y1), col, -1)
    cv2.rectangle(out, (x0, y0 + r), (x1, y1 - r), col, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(out, (cx, cy), r, col, -1, lineType=cv2.LINE_AA)
    # a faint seam between the front plate and the face cushion, as on real headsets
    seam = (min(255, col + 18) if out.ndim == 2 else tuple(min(255, c + 18) for c in col))
    sy = int(round(y0 + 0.82 * (y1 - y0)))
    cv2.line(out, (x0 + r, sy), (x1 - r, sy), seam, max(1, int(round(0.015 * w))))
    return out
