"""Smoothing of the class probabilities over the frames of a stream (video, webcam, WebSocket).

One meaning of ALPHA everywhere (`vrfer predict --smooth`, `vrfer serve --alpha` and the `alpha` query
parameter, `Recognizer(alpha=...)`): the weight of the newest frame in an exponential moving average,

    smoothed_t = ALPHA * probs_t + (1 - ALPHA) * smoothed_{t-1},    smoothed_0 = probs_0

so ALPHA = 1 is no smoothing and ALPHA = 0.2 averages over about the last 5 frames (1 / ALPHA).
Each face keeps its own average: a face is matched to the previous frame's face whose box overlaps it
most (intersection over union above `min_iou`); a face with no match starts from its own
probabilities, and a face that is gone is forgotten.
"""

from __future__ import annotations

import numpy as np

from ..errors import VrferError
from ..faces.geometry import iou

MIN_IOU = 0.1   # boxes of one face in successive frames overlap far more; two faces side by side do not


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """ALPHA as a float in (0, 1]; VrferError otherwise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise VrferError(f"{what} {alpha!r}: expected a number in (0, 1]") from None
    if not 0.0 < a <= 1.0:
        raise VrferError(f"{what} {alpha}: ALPHA must be in (0, 1] (the weight of the newest frame; "
                         "1: no smoothing, 0.2: about the last 5 frames)")
    return a


class Smoother:
    """Exponential moving average of each face's probabilities across frames (see the module docstring)."""

    def __init__(self, alpha: float = 1.0, min_iou: float = MIN_IOU):
        self.alpha = check_alpha(alpha)
        self.min_iou = min_iou
        self.state: list[tuple[tuple, np.ndarray]] = []     # (box, smoothed probabilities) per face

    def reset(self) -> None:
        self.state = []

    def update(self, boxes, probs) -> list[np.ndarray]:
        """One frame: the faces' boxes (x, y, w, h) and probabilities -> their smoothed probabilities.

        Faces are matched greedily, best overlap first, each previous face at most once."""
        probs = [np.asarray(p, np.float64) for p in probs]
        pairs = sorted(((iou(b, pb), i, j) for i, b in enumerate(boxes) for j, (pb, _) in enumerate(self.state)),
                       reverse=True)
        match: dict[int, int] = {}
        for v, i, j in pairs:
            if v <= self.min_iou:
                break
            if i not in match and j not in match.values():
                match[i] = j
        out = []
        for i, p in enumerate(probs):
            prev = self.state[match[i]][1] if i in match else None
            out.append(p.copy() if prev is None or prev.shape != p.shape
                       else self.alpha * p + (1.0 - self.alpha) * prev)
        self.state = [(tuple(b), s) for b, s in zip(boxes, out)]
        return out
