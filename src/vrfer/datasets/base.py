"""FaceSet: a split of a dataset held in memory as arrays, the form every reader returns."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classes import CLASSES, NUM_CLASSES
from ..errors import VrferError


@dataclass
class FaceSet:
    """Aligned face crops and their labels, in vrfer's class order (vrfer.classes.CLASSES).

    images:  uint8 (N, H, W) grayscale crops
    targets: float32 (N, 8) per-image target: one-hot (majority), a vote distribution (probability,
             crossentropy) or a multi-hot vector (multi_target)
    labels:  int64 (N,) the top class, used for accuracy
    names:   where each image came from (file name or "csv:row")
    """

    images: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    names: list[str]
    source: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)   # items the label rule or a cap left out, and why

    def __post_init__(self):
        n = len(self.images)
        if not (len(self.targets) == len(self.labels) == len(self.names) == n):
            raise ValueError("FaceSet arrays differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=NUM_CLASSES)
        return {c: int(k) for c, k in zip(CLASSES, counts)}

    def subset(self, index) -> "FaceSet":
        index = np.asarray(index)
        return FaceSet(self.images[index], self.targets[index], self.labels[index],
                       [self.names[i] for i in index], self.source, dict(self.skipped))

    def fingerprint(self) -> str:
        """Short hash of the images and labels: names a dataset exactly in results."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:16]


def concat(sets: list[FaceSet], source: str = "") -> FaceSet:
    """Join splits of several datasets (same crop size, same class order) into one training set."""
    shapes = {s.images.shape[1:] for s in sets}
    if len(shapes) != 1:
        raise VrferError(f"cannot join datasets with different crop sizes: {sorted(shapes)}")
    skipped: dict[str, int] = {}
    for s in sets:
        for k, v in s.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return FaceSet(np.concatenate([s.images for s in sets]), np.concatenate([s.targets for s in sets]),
                   np.concatenate([s.labels for s in sets]), sum((s.names for s in sets), []),
                   source or "+".join(s.source for s in sets), skipped)


class BadData:
    """Collects bad items. Without skip_bad the first one stops the read with a clear message."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.counts: dict[str, int] = {}

    def __call__(self, where: str, why: str, kind: str) -> None:
        if not self.skip_bad:
            raise VrferError(f"{where}: {why} (use --skip-bad to skip such items and count them)")
        self.counts[kind] = self.counts.get(kind, 0) + 1


def cache_dir() -> Path:
    """Per-user cache folder (never beside the data: the data may be read-only)."""
    root = os.environ.get("VRFER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vrfer")
    return Path(root)
