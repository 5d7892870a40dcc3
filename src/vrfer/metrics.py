"""Scores of predicted classes against labels: accuracy with a bootstrap interval, per-class recall, the
confusion matrix. Pure functions of arrays, shared by evaluation (vrfer.evaluate) and training's validation.

Accuracy alone hides the rare classes a VR scene most needs (fear, anger, disgust, sadness), so every
result also carries the mean per-class recall over the classes present in the data.
"""

from __future__ import annotations

import numpy as np

from .classes import CLASSES


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of a 0/1 vector (seeded: deterministic)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), (n_boot, len(correct)))
    means = correct[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def metrics(labels: np.ndarray, pred: np.ndarray, classes: tuple = CLASSES) -> dict:
    """Accuracy (95% bootstrap CI), per-class recall, mean per-class recall over the classes present,
    and the confusion matrix. pred may hold -1 (no answer, e.g. no face found): it counts as wrong.
    classes: the names of the label indices (the model's, model.cfg.classes)."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    correct = (pred == labels).astype(np.float64)
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    answered = pred >= 0
    np.add.at(cm, (labels[answered], pred[answered]), 1)
    support = np.bincount(labels, minlength=k)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    lo, hi = bootstrap_ci(correct)
    return {"accuracy": float(correct.mean()), "n": int(len(correct)), "ci95": [lo, hi],
            "mean_class_recall": float(np.mean([v for v in per_class.values() if v is not None])),
            "per_class": per_class, "support": {c: int(s) for c, s in zip(classes, support)},
            "predicted_share": {c: float(v) for c, v in zip(classes, cm.sum(0) / max(1, len(labels)))},
            "confusion": cm.tolist()}
