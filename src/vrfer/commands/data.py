"""vrfer data summary: what a dataset reader loads, counted per split and class under a label rule."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="dataset tools (summary)",
                       description="Dataset tools. `vrfer data summary` reads a dataset the way training and "
                                   "evaluation read it, and counts what is kept per split and class.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    s = dsub.add_parser("summary", help="counts per split and class under a label rule",
                        description="Read FER+ or AffectNet as training and evaluation do and count the "
                                    "faces kept per split and class, and those skipped or dropped, and why.")
    s.add_argument("--dataset", choices=["ferplus", "affectnet"], required=True, help="which dataset")
    s.add_argument("--root", required=True, help="dataset root folder")
    s.add_argument("--split", action="append", choices=["train", "valid", "test"],
                   help="split to count (repeatable; default: every split present under --root; AffectNet "
                        "has train and valid)")
    s.add_argument("--votes", choices=["label", "fer2013new"], default="label",
                   help="FER+ votes from each folder's label.csv or from fer2013new.csv")
    s.add_argument("--mode", choices=["majority", "probability", "crossentropy", "multi_target"],
                   default="majority", help="FER+ label rule (Microsoft's FERPlus modes)")
    s.add_argument("--cap", type=int, default=15000, help="AffectNet per-class training cap")
    s.add_argument("--seed", type=int, default=0, help="AffectNet: seed of the capped selection")
    s.add_argument("--skip-bad", action="store_true",
                   help="skip bad images and rows and count them (default: stop at the first, naming it)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=run)


def run(a) -> int:
    if str(a.root) == "":       # Path("") is the working folder: an unset shell variable must not read it
        from ..errors import VrferError
        raise VrferError("--root '': empty path")
    if a.dataset == "ferplus":
        from ..datasets.ferplus import summary
        out = summary(a.root, a.mode, a.votes, a.skip_bad, splits=a.split)
    else:
        from ..datasets.affectnet import summary
        from ..errors import VrferError
        if a.split and "test" in a.split:
            raise VrferError("--split test: AffectNet has train and valid (its validation set) only")
        out = summary(a.root, cap=a.cap, seed=a.seed, skip_bad=a.skip_bad, splits=a.split)
    if a.json:
        print(json.dumps(out))
        return 0
    for split, d in out.items():
        cls = ", ".join(f"{k} {v}" for k, v in d["classes"].items())
        print(f"{split:>10}: {d['count']:>7} images ({cls})")
        for k, v in d.get("skipped", {}).items():
            print(f"{'':>12}skipped {v}: {k}")
        for k, v in d.get("dropped", {}).items():
            print(f"{'':>12}dropped {v}: {k}")
    return 0
