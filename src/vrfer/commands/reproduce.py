"""vrfer reproduce: the paper's Table 1 on FER+ (train full/lower x test full/lower), trained here."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("reproduce", help="train (or reuse) full-face and lower-half models and evaluate Table 1")
    p.add_argument("--dataset", choices=["ferplus"], default="ferplus")
    p.add_argument("--root", required=True, help="FER+ root")
    p.add_argument("--affectnet-root", help="train on FER+ + AffectNet, as the paper (default: FER+ only)")
    p.add_argument("--models", nargs="+", default=["vrfer-cnn"], help="model families: vrfer-cnn, vgg-face, vgg-f")
    p.add_argument("--runs", default="runs", help="folder of the training runs (reused / resumed)")
    p.add_argument("--out", default="reproduce", help="folder for table.md, results.json and PNGs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every run")
    p.add_argument("--tta-flip", action="store_true", help="flip-averaged predictions")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..reproduce import reproduce
    res = reproduce(a.root, a.models, Path(a.runs), Path(a.out), a.affectnet_root, a.set, a.tta_flip, a.quiet)
    print((Path(a.out) / "table.md").read_text())
    return 0 if res else 1
