"""What a run writes beside its weights, every epoch: metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_metrics(metrics: list[dict], path: Path) -> None:
    """metrics.jsonl rewritten whole from the checkpoint's rows: a resumed run never repeats an epoch."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in metrics))
    os.replace(tmp, path)


def plot_curves(metrics: list[dict], path: Path) -> None:
    import matplotlib           # imported when first needed: it is slow to load, and only rank 0 draws
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [m["train_loss"] for m in metrics], label="train")
    ax[0].plot(ep, [m["val_loss"] for m in metrics], label="validation")
    ax[0].set_title("loss"); ax[0].legend()
    ax[1].plot(ep, [100 * m["val_acc"] for m in metrics], color="C2", label="saved model")
    if "val_acc_trained" in metrics[-1]:  # optim.ema: the average is saved; the trained weights beside it
        ax[1].plot(ep, [100 * m.get("val_acc_trained", m["val_acc"]) for m in metrics], color="C2", ls="--",
                   label="trained weights")
        ax[1].legend()
    ax[1].set_title("validation accuracy (%)")
    ax[2].semilogy(ep, [m["lr"] for m in metrics], color="C3")
    ax[2].set_title("learning rate")
    for a in ax:
        a.set_xlabel("epoch"); a.grid(alpha=0.3)
    for m in metrics:  # shade the sparse phase
        if m["phase"] == "sparse":
            for a in ax:
                a.axvspan(m["epoch"] - 0.5, m["epoch"] + 0.5, color="0.9", zorder=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
