"""Accuracy with a bootstrap interval, per-class accuracy and a confusion matrix (also as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import CLASSES
from .datasets.base import FaceSet
from .inference import predict_proba
from .occlusion import occlude_upper

OCCLUSIONS = ("none", "upper-half")


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of a 0/1 vector (seeded: deterministic)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), (n_boot, len(correct)))
    means = correct[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def evaluate(model, data: FaceSet, occlusion: str = "none", tta_flip: bool = False) -> dict:
    """Test `model` on `data`; occlusion 'upper-half' blacks out the top half of every face first."""
    if occlusion not in OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {OCCLUSIONS}")
    images = occlude_upper(data.images, model.cfg.occlusion) if occlusion == "upper-half" else data.images
    probs = predict_proba(model, images, tta_flip=tta_flip)
    pred = probs.argmax(1)
    correct = (pred == data.labels).astype(np.float64)
    k = len(CLASSES)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (data.labels, pred), 1)
    support = cm.sum(1)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(CLASSES)}
    lo, hi = bootstrap_ci(correct)
    return {"accuracy": float(correct.mean()), "n": int(len(correct)), "ci95": [lo, hi],
            "per_class": per_class, "support": {c: int(s) for c, s in zip(CLASSES, support)},
            "mean_class_accuracy": float(np.mean([v for v in per_class.values() if v is not None])),
            "confusion": cm.tolist(), "occlusion": occlusion, "tta_flip": tta_flip,
            "data_fingerprint": data.fingerprint()}


def confusion_png(result: dict, path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(result["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {100 * result['accuracy']:.2f}% (n={result['n']})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
