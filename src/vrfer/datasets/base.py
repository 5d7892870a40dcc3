"""FaceSet: a split of a dataset held in memory as arrays, the form every reader returns."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..errors import VrferError


@dataclass
class FaceSet:
    """Aligned face crops and their labels, in the order of `classes` (as the readers give them: vrfer's class
    order, vrfer.classes.CLASSES; `with_classes` gives them in a model's class set).

    images:  uint8 (N, H, W) grayscale crops
    targets: float32 (N, len(classes)) per-image target: one-hot (majority), a vote distribution (probability,
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
    classes: tuple = CLASSES                                 # the names of the label indices and target columns

    def __post_init__(self):
        n = len(self.images)
        if not (len(self.targets) == len(self.labels) == len(self.names) == n):
            raise ValueError("FaceSet arrays differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, counts)}

    def subset(self, index) -> "FaceSet":
        index = np.asarray(index)
        return FaceSet(self.images[index], self.targets[index], self.labels[index],
                       [self.names[i] for i in index], self.source, dict(self.skipped), classes=self.classes)

    def with_classes(self, classes) -> FaceSet:
        """The faces whose label is one of `classes` (names among this set's classes, in the order wanted), labelled
        in that order; targets keep those classes' columns, a distribution (rows summing to 1: one-hot or votes)
        renormalised over them. The faces left out are counted in `dropped`. The same classes: this set itself."""
        classes = tuple(classes)
        if classes == self.classes:
            return self
        missing = [c for c in classes if c not in self.classes]
        if missing:
            raise VrferError(f"{self.source or 'data'}: no class {missing[0]!r} in its labels "
                             f"({', '.join(self.classes)})")
        cols = np.array([self.classes.index(c) for c in classes])
        renumber = np.full(len(self.classes), -1, np.int64)
        renumber[cols] = np.arange(len(cols))
        keep = np.flatnonzero(renumber[self.labels] >= 0)
        targets = self.targets[keep][:, cols]
        if len(self.targets) and np.allclose(self.targets.sum(1), 1, atol=1e-4):
            targets = targets / targets.sum(1, keepdims=True)   # the label's column holds mass: never 0
        dropped = {**self.dropped, "outside the class set": len(self) - len(keep)}
        return FaceSet(self.images[keep], targets.astype(np.float32), renumber[self.labels[keep]],
                       [self.names[i] for i in keep], self.source, dict(self.skipped), dropped, classes)

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
    if len({s.classes for s in sets}) != 1:
        raise VrferError(f"cannot join datasets with different classes: {sorted({s.classes for s in sets})}")
    skipped: dict[str, int] = {}
    for s in sets:
        for k, v in s.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return FaceSet(np.concatenate([s.images for s in sets]), np.concatenate([s.targets for s in sets]),
                   np.concatenate([s.labels for s in sets]), sum((s.names for s in sets), []),
                   source or "+".join(s.source for s in sets), skipped, classes=sets[0].classes)


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
