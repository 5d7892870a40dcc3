"""vrfer evaluate: accuracy (95% bootstrap interval), per-class accuracy and a confusion matrix PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..threads import add_threads_option
from ._options import add_face_arg, add_model_arg, add_postprocess_args, model_source


def add_parser(sub):
    p = sub.add_parser("evaluate", help="test a model on a dataset split (full or upper-half-occluded faces)",
                       description="Accuracy of a trained model on a dataset split, with a 95% bootstrap "
                                   "interval, per-class accuracy, mean per-class recall and the confusion matrix "
                                   "(also as a PNG in --out). By default the faces' upper half is blacked out, as "
                                   "a headset does.")
    add_model_arg(p, allow_untrained=True)
    p.add_argument("--dataset", choices=["ferplus", "affectnet", "folder"], default="ferplus",
                   help="folder: any folder with a labels.csv (columns file, label or label_name), e.g. CK+48 "
                        "(default: ferplus)")
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--split", default=None, help="ferplus: train|valid|test; affectnet: train|validation (valid and test "
                                                   "name its validation set: AffectNet has no test split); "
                                                   "not used for folder (default: test)")
    add_face_arg(p, boxes=False, default="none", note="folder only")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad rows and unreadable images and count them (default: stop at the first, "
                        "naming it)")
    p.add_argument("--occlusion", choices=["none", "upper-half", "headset"], default="upper-half",
                   help="upper-half: black out the top half of each face crop; headset (folder only): paint "
                        "vrfer's synthetic headset over the eyes of the whole photo before the face is looked "
                        "for (default: upper-half)")
    p.add_argument("--adapt", choices=["loo"], default=None,
                   help="folder only (needs a subject column): also score an adaptation to the folder's setup "
                        "(vrfer adapt), each person by a fit made without them (leave-one-person-out)")
    p.add_argument("--enrol", type=int, default=None, metavar="K",
                   help="folder only (needs subject; session where there is one): per person, K faces per class "
                        "from ONE session make a profile (vrfer calibrate), scored on that person's OTHER "
                        "sessions beside the unprofiled answer on the same faces; 0: every face of the session")
    p.add_argument("--draws", type=int, default=None, metavar="N",
                   help="with --enrol K: N seeded draws of the enrolment faces, 1 to 100 (default: 5)")
    p.add_argument("--seed", type=int, default=None, help="with --enrol: seed of the draws, >= 0 (default: 0)")
    p.add_argument("--reference", choices=["neutral", "auto"], default=None,
                   help="folder only (needs a subject column): read each face against the person's reference "
                        "(vrfer.personal.reference) made from their OTHER photos (neutral: their neutral photos; auto: those "
                        "the generic answer calls neutral); the figures are the referenced answer's, beside the "
                        "generic one on the same faces")
    p.add_argument("--tta-flip", action="store_true", help="average with the mirrored face")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the confusion-matrix PNG (default: no PNG is written)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_postprocess_args(p)
    add_threads_option(p)
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..errors import VrferError
    from ..evaluate import confusion_png, evaluate, evaluate_folder
    from ..outputs import output_dir
    from ..inference.postprocess import PostProcess
    from ..threads import use_torch_threads
    if a.dataset == "folder" and a.split is not None:      # was: ignored silently, whatever it said
        raise VrferError(f"--split {a.split}: a labelled folder is one split (its labels.csv): leave --split out")
    if a.dataset == "affectnet" and a.split not in (None, "train", "valid", "validation", "test"):
        raise VrferError(f"--split {a.split}: AffectNet has train and validation (valid and test name validation)")
    a.split = a.split or "test"
    use_torch_threads(a.threads)
    model = model_source(a).torch_model()
    post = PostProcess(model.cfg, a.prior, a.prior_tau, a.classes)
    explicit_post = None if a.prior is None and a.prior_tau is None and a.classes is None else post
    if a.occlusion == "headset" and a.dataset != "folder":
        raise VrferError("--occlusion headset paints on whole photos: use it with --dataset folder "
                         "(upper-half does the same on data sets of face crops)")
    if a.enrol is None and (a.draws is not None or a.seed is not None):
        raise VrferError(f"{'--draws' if a.draws is not None else '--seed'} goes with --enrol K (the draws of "
                         "the enrolment faces)")
    a.draws, a.seed = 5 if a.draws is None else a.draws, 0 if a.seed is None else a.seed
    if a.adapt or a.enrol is not None or a.reference:
        if a.out:
            raise VrferError("--out (the confusion matrix PNG) is not made with --adapt, --enrol or --reference: "
                             "leave it out")
        if a.dataset != "folder":
            raise VrferError("--adapt, --enrol and --reference score people of a labelled folder: use "
                             "--dataset folder")
        if a.tta_flip:
            raise VrferError("--tta-flip is not available with --adapt, --enrol or --reference")
        return _personal(a, model, explicit_post)
    if a.dataset == "folder":
        if a.tta_flip:
            raise VrferError("--tta-flip is not available with --dataset folder")
        out = output_dir(a.out, create=False) if a.out else None   # checked before the long part
        res = evaluate_folder(model, a.root, a.face, a.occlusion, a.skip_bad, threads=a.threads, post=post)
        a.split = Path(a.root).name or "folder"
    else:
        from ..datasets import load_split
        if a.dataset == "affectnet" and a.split != "train":
            a.split = "validation"   # AffectNet publishes no test split: its validation set is the test (the paper's too)
        data = load_split(a.dataset, a.root, a.split, skip_bad=a.skip_bad)
        out = output_dir(a.out, create=False) if a.out else None   # checked before the long part
        res = evaluate(model, data, a.occlusion, a.tta_flip, post=post)
        if data.skipped:
            res["skipped"] = dict(data.skipped)
    res.update(model=a.model, dataset=a.dataset, split=a.split)
    png = None
    if out is not None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(a.model).stem if a.model.endswith(".safetensors") else a.model)
        png = confusion_png(res, out / f"confusion-{stem}-{a.dataset}-{a.split}-{a.occlusion}"
                                      f"{'-tta_flip' if a.tta_flip else ''}.png",
                            f"{a.model} on {a.dataset} {a.split}, occlusion: {a.occlusion}"
                            f"{', flip-averaged' if a.tta_flip else ''}")
        res["confusion_png"] = str(png)
    if a.json:
        print(json.dumps(res))
        return 0
    lo, hi = res["ci95"]
    print(f"{a.model} on {a.dataset} {a.split} ({res['n']} faces, occlusion {a.occlusion}): "
          f"accuracy {100 * res['accuracy']:.2f}% (95% CI {100 * lo:.2f}-{100 * hi:.2f}), "
          f"mean per-class recall {res['mean_class_recall']:.3f}")
    if res.get("no_face"):
        names = res.get("no_face_files") or []
        more = f" and {res['no_face'] - len(names)} more" if res["no_face"] > len(names) else ""
        print(f"  no face found in {res['no_face']} images (counted as wrong): {', '.join(names)}{more}")
    for c, v in res["per_class"].items():
        print(f"  {c:>10}: {'-' if v is None else f'{100 * v:6.2f}%'}  (n={res['support'][c]})")
    for why, n in res.get("skipped", {}).items():
        print(f"  skipped {n}: {why}")
    print(f"confusion matrix: {png}" if png else "confusion matrix PNG: give --out DIR")
    return 0


def _personal(a, model, post) -> int:
    """evaluate --adapt / --enrol / --reference: vrfer.personal.evaluate_personal.evaluate_personal, printed."""
    import sys

    from ..personal.evaluate_personal import evaluate_personal
    from ..outputs import plural
    log = (lambda line: print(line, file=sys.stderr)) if a.json else None
    res = evaluate_personal(model, a.root, a.face, a.occlusion, a.adapt, a.enrol, a.draws, a.seed, post,
                            a.skip_bad, a.threads, log=log, reference=a.reference)
    res.update(model=a.model, dataset="folder", split=Path(a.root).name or "folder")
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{a.model} on {res['split']} ({plural(res['n'], 'face')} of {plural(res['people'], 'person')}, face {a.face}, "
          f"occlusion {a.occlusion}); accuracy / mean per-class recall:")
    rows = [("generic", res["generic"])]
    if "referenced" in res:
        ref = res["referenced"]
        rows.append((f"referenced ({ref['reference']}; head fitted on {', '.join(ref['head_fitted_on']) or '?'})", ref))
    if "adapted_loo" in res:
        rows.append(("adapted, leave-one-person-out", res["adapted_loo"]))
    if "adapted_loo_referenced" in res:
        rows.append(("adapted + referenced, leave-one-person-out", res["adapted_loo_referenced"]))
    for name, r in rows:
        neutral = (r.get("per_class") or {}).get("neutral")
        print(f"  {name:<44} {100 * r['accuracy']:6.2f}%  {r['mean_class_recall']:.3f}"
              + ("" if neutral is None else f"  (neutral recall {neutral:.2f})"))
    if res.get("head_saw_this_data"):
        print("  note: the model's referenced head was fitted on this data: the referenced figure is not an honest one")
    if res.get("referenced", {}).get("no_reference"):
        print(f"  {res['referenced']['no_reference']} faces had no other photo to make a reference from: "
              "they keep the generic answer")
    if res.get("no_face"):
        print(f"  no face found in {res['no_face']} images (left out of these figures)")
    cal = res.get("calibration")
    if cal:
        k = "all faces of the session" if cal["k"] == 0 else f"K={cal['k']} per class"
        print(f"calibration ({k}, {cal['draws']} draws, seed {cal['seed']}; {cal['sessions']}"
              + (f"; always enrolled: {', '.join(cal['always_enrolled_sessions'])}" if cal["always_enrolled_sessions"]
                 else "") + f"), on the same {cal['calibrated']['n']} faces:")
        for name in ("unprofiled", "calibrated"):
            r = cal[name]
            print(f"  {name + ' (' + cal['starts_from'] + ')':<44} {100 * r['accuracy']:6.2f}% "
                  f"(sd {100 * r['accuracy_sd']:.2f})  {r['mean_class_recall']:.3f}")
    print("  per class: " + "  ".join(
        f"{c} {100 * v:.0f}%" for c, v in (cal["calibrated"] if cal else rows[-1][1])["per_class"].items()
        if v is not None))
    return 0
