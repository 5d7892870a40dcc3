"""vrfer reproduce: the paper's Table 1 on FER+ (train full/lower x test full/lower), trained here."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("reproduce", help="train (or reuse) full-face and lower-half models and evaluate Table 1",
                       description="The paper's Table 1 on FER+: for each model family, train on full faces (stage "
                                   "1) and on the lower half (stage 2, started from stage 1), and test both on full "
                                   "and lower-half faces. Finished runs in --runs are reused, unfinished ones "
                                   "resumed. Writes table.md, results.json and confusion-matrix PNGs to --out.")
    p.add_argument("--dataset", choices=["ferplus"], default="ferplus", help="test dataset")
    p.add_argument("--root", required=True, help="FER+ root")
    p.add_argument("--affectnet-root", help="train on FER+ + AffectNet, as the paper (default: FER+ only)")
    p.add_argument("--models", nargs="+", default=["vrfer-cnn"], metavar="FAMILY",
                   help="model families: vrfer-cnn (CPU), vgg-face, vgg-f (GPU; need their backbone weights)")
    p.add_argument("--runs", default="runs", help="folder of the training runs (reused / resumed)")
    p.add_argument("--out", default="reproduce", help="folder for table.md, results.json and PNGs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override for every run (repeatable; default: none)")
    p.add_argument("--tta-flip", action="store_true", help="flip-averaged predictions")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images and malformed label rows and count them, in training and test "
                        "(default: stop at the first, naming it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..outputs import output_dir
    from ..reproduce import reproduce
    output_dir(a.out, create=False)
    output_dir(a.runs, option="--runs", create=False)
    res = reproduce(a.root, a.models, Path(a.runs), Path(a.out), a.affectnet_root, a.set, a.tta_flip, a.quiet,
                    a.skip_bad)
    print((Path(a.out) / "table.md").read_text())
    return 0 if res else 1
