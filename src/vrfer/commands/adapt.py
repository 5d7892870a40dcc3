"""vrfer adapt: a model adapted to a deployment's own setup (camera, light, headset, people)."""

from __future__ import annotations

from ..threads import add_threads_option
from ._options import add_face_arg, add_model_arg, model_source


def add_parser(sub):
    p = sub.add_parser("adapt", help="adapt a model to your own setup from labelled and/or unlabelled faces of it",
                       description="Adapt a model to a setup (vrfer.personal.adapt): AdaBN re-estimates the network's "
                                   "normalisation on faces of the setup (no labels needed), and a new last layer is "
                                   "fitted on labelled faces (pulled towards the generic one). Writes one model file "
                                   "that predict, serve, evaluate, export and the API take with --model FILE, and "
                                   "prints a leave-one-person-out estimate of its accuracy (each person scored by "
                                   "an adaptation fitted without them).")
    p.add_argument("folder", nargs="?", default=None,
                   help="labelled folder of the setup: labels.csv with columns file, label or label_name, and "
                        "subject (the person in each photo)")
    p.add_argument("--unlabelled", action="append", default=[], metavar="PATH",
                   help="unlabelled faces of the setup: an image, a folder of images, or a video (repeatable); "
                        "used for the normalisation statistics only")
    add_model_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="the adapted model file to write")
    p.add_argument("--name", default=None, help="the adapted model's name (default: the --out file's stem)")
    add_face_arg(p, boxes=False)
    p.add_argument("--no-mirror", action="store_true",
                   help="fit the last layer on the labelled faces as they are only, not also on their mirror images "
                        "(for a camera that sees the face from one side)")
    p.add_argument("--no-estimate", action="store_true",
                   help="skip the leave-one-person-out estimate (one fit per person)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows, unreadable images and unreadable or truncated videos, and count them")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_threads_option(p)
    p.set_defaults(fn=run)


def run(a) -> int:
    import json
    import sys
    from pathlib import Path

    from ..personal.adapt import adapt_folder
    from ..errors import VrferError
    from ..models.registry import save_model
    from ..outputs import output_file
    from ..threads import use_torch_threads
    if a.folder is None and not a.unlabelled:
        raise VrferError("give a labelled FOLDER of the setup, --unlabelled PATH, or both")
    output_file(a.out, suffix=".safetensors", what="the adapted model")      # refused before any work
    base = model_source(a).torch_model()
    out = output_file(a.out)
    use_torch_threads(a.threads)
    log = (lambda line: print(line, file=sys.stderr)) if a.json else print
    model, report = adapt_folder(base, a.folder, a.unlabelled, a.face, name=a.name or Path(a.out).stem,
                                 estimate=not a.no_estimate, skip_bad=a.skip_bad, threads=a.threads, log=log,
                                 mirror=not a.no_mirror)
    save_model(model, out)
    report["out"] = str(out)
    # labelled photos without a face are left out of the fit: named on stderr, exit 1 (done, but some inputs were
    # not used); rows --skip-bad skipped are counted, as evaluate counts them
    left_out = report.get("no_face", 0)
    if report.get("no_face"):
        names = report.get("no_face_files", [])
        more = f" and {report['no_face'] - len(names)} more" if report["no_face"] > len(names) else ""
        print(f"{a.folder}: no face found in {report['no_face']} images (left out of the adaptation): "
              f"{', '.join(names)}{more}", file=sys.stderr)
    for why, n in report.get("skipped", {}).items():
        print(f"{a.folder}: skipped {n} rows of labels.csv: {why}", file=sys.stderr)
    if a.json:
        print(json.dumps(report))
        return 1 if left_out else 0
    if "loo" in report:
        loo, gen = report["loo"], report["generic_same_faces"]
        print(f"leave-one-person-out estimate: accuracy {100 * loo['accuracy']:.2f}%, mean per-class recall "
              f"{loo['mean_class_recall']:.3f} (the generic model on the same faces: {100 * gen['accuracy']:.2f}%, "
              f"{gen['mean_class_recall']:.3f})")
        for c, v in loo["per_class"].items():
            if v is not None:
                print(f"  {c:>10}: {100 * v:6.2f}%  (generic {100 * gen['per_class'][c]:6.2f}%)")
    print(f"adapted model: {out} (use it with --model {out})")
    return 1 if left_out else 0
