"""Accuracy against mean per-class recall as the inference-time prior correction changes.

For each model and each tau, the answer is predict's with `--prior uniform --prior-tau TAU`
(vrfer.inference.postprocess.PostProcess: logit - tau * log train_prior; tau 0 is the plain model, tau 1 answers as if
every class were equally frequent). Prints one markdown
table: FER+ valid (where the default is chosen), FER+ test, and CK+48 (measured only, never used to
choose). The training prior is the one stored with the model (cfg.extra["train_prior"]).

    python benchmarks/prior_sweep.py --model vrfer-lower --model runs/x-combo \
        --ferplus ../shared/data/ferplus --ckplus ../shared/data/ckplus48
"""

from __future__ import annotations

import argparse


from vrfer.datasets.ferplus import load_ferplus
from vrfer.evaluate import predict_folder
from vrfer.inference.torch_backend import predict_proba
from vrfer.metrics import metrics
from vrfer.models import create_model
from vrfer.occlusion import occlude_upper
from vrfer.inference.postprocess import PostProcess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--ferplus", default="../shared/data/ferplus")
    ap.add_argument("--ckplus", default="../shared/data/ckplus48")
    ap.add_argument("--taus", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--occlusion", default="upper-half", choices=["none", "upper-half"])
    a = ap.parse_args()
    taus = [float(t) for t in a.taus.split(",")]
    valid, test = load_ferplus(a.ferplus, "valid"), load_ferplus(a.ferplus, "test")
    print("| model | tau | FER+ valid acc | valid recall | FER+ test acc | test recall | CK+48 acc | CK+48 recall |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.model:
        model = create_model(name)
        occ = (lambda im: occlude_upper(im, model.cfg.occlusion)) if a.occlusion == "upper-half" else (lambda im: im)
        pv = predict_proba(model, occ(valid.images))
        pt = predict_proba(model, occ(test.images))
        ck_labels, pc, _ = predict_folder(model, a.ckplus, "none", a.occlusion, progress=False)
        for tau in taus:
            row = [name, f"{tau:g}"]
            for labels, p in ((valid.labels, pv), (test.labels, pt), (ck_labels, pc)):
                r = metrics(labels, PostProcess(model.cfg, "uniform", tau).apply(p).argmax(1))
                row += [f"{100 * r['accuracy']:.2f}%", f"{r['mean_class_recall']:.3f}"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
