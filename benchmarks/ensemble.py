"""Averaging the probabilities of several models (lower-half or full-face alike: each sees its own input) on
FER+ valid and test and CK+48 (`--face none`), plain and with the prior shift of the first model
(vrfer.inference.postprocess.PostProcess, `--prior uniform`, tau 0.25, 0.5), each model alone and all together.

    python benchmarks/ensemble.py MODEL MODEL [...] [--root ../shared/data/ferplus] [--ck ../shared/data/ckplus48]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main(argv=None) -> int:
    import torch

    from vrfer.datasets import load_split
    from vrfer.evaluate import predict_folder
    from vrfer.inference.torch_backend import predict_proba
    from vrfer.metrics import metrics
    from vrfer.models import create_model
    from vrfer.inference.postprocess import PostProcess

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--root", default=str(SHARED / "data" / "ferplus"))
    ap.add_argument("--ck", default=str(SHARED / "data" / "ckplus48"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sets = {s: load_split("ferplus", a.root, s) for s in ("valid", "test")}
    labels = {s: d.labels for s, d in sets.items()}
    probs = {}
    for name in a.models:
        m = create_model(name)
        probs[name] = {s: predict_proba(m, d.images) for s, d in sets.items()}
        labels["ck"], probs[name]["ck"], _ = predict_folder(name, a.ck, face="none", progress=False)
    cfg = create_model(a.models[0]).cfg
    for combo in [[n] for n in a.models] + ([a.models] if len(a.models) > 1 else []):
        for tau in (0.0, 0.25, 0.5):
            cells = []
            for split in ("valid", "test", "ck"):
                p = np.mean([probs[n][split] for n in combo], 0)
                r = metrics(labels[split], PostProcess(cfg, "uniform", tau).apply(p).argmax(1))
                cells.append(f"{split} {100 * r['accuracy']:.2f}% / {r['mean_class_recall']:.3f}")
            print(f"{' + '.join(combo)}  tau {tau}:  " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
