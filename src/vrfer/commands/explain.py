"""`vrfer explain`: Grad-CAM pictures (as in the paper's Figure 1) for face images.

    vrfer explain photo.jpg --out cams/                    # find the faces first (as vrfer predict)
    vrfer explain faces/*.png --face none --out cams/      # each image is a face crop
    vrfer explain photo.jpg --face 120,80,200,200 --out cams/ --json

The faces, crops and probabilities are vrfer predict's (vrfer.inference.pipeline): the same image gives the same
answer in both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import VrferError
from ._options import (
    add_detector_arg,
    add_face_arg,
    add_model_arg,
    add_postprocess_args,
    add_reference_arg,
    item_error,
    model_source,
)


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="Grad-CAM heat maps of what the model looks at (PNG per face)",
                       description="Draw the face as the model gets it (the headset's part dark) beside "
                                   "its Grad-CAM heat map, titled with the class shown and its probability, "
                                   "one PNG per face. Faces, crops and probabilities are those of vrfer predict.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, help="folder for the PNGs (<name>_gradcam.png)")
    add_model_arg(p, allow_untrained=True)
    add_face_arg(p)
    add_detector_arg(p)
    p.add_argument("--target", default=None,
                   help="class to explain (e.g. happiness); default the predicted one. The PNG's title names "
                        "the class explained and its probability")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per face: vrfer predict --json's fields plus explained, "
                        "explained_score and png")
    add_postprocess_args(p)
    add_reference_arg(p)
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..explain import explain_image
    from ..outputs import output_dir
    from ..inference.pipeline import Pipeline, parse_face

    face = parse_face(a.face)
    source = model_source(a)
    if a.target is not None and a.target not in source.cfg.classes:
        from ..classes import (
            class_name,  # the spellings labels.csv and calibrate take ("happy")
        )
        a.target = class_name(a.target)
    if a.target is not None and a.target not in source.cfg.classes:
        raise VrferError(f"unknown class {a.target!r}; classes: {', '.join(source.cfg.classes)}")
    pipeline = Pipeline(source, face, "torch", detector=a.detector, prior=a.prior, prior_tau=a.prior_tau,
                        classes=a.classes)
    if a.reference not in (None, "auto", "off"):    # a photo is no stream: only a reference FILE changes it
        pipeline.set_reference(Path(a.reference))    # the probabilities then are the referenced answer's
    existed = Path(a.out).exists()
    out = output_dir(a.out)

    failed, taken, written = 0, set(), 0
    for path in a.images:
        try:
            for d in explain_image(pipeline, path, out, a.target, taken):
                if a.json:
                    print(json.dumps(d), flush=True)
                else:
                    print(f"{path}: {d['explained']} {d['explained_score']:.2f} -> {d['png']}", flush=True)
                written += 1
        except VrferError as e:
            failed += 1
            item_error(path or "''", str(e))       # worded as predict words a per-file failure
    if not written and not existed:
        out.rmdir()  # nothing to show: leave no empty folder behind
    if failed:   # as vrfer predict: some inputs could not be used -> 1
        if failed < len(a.images):
            print(f"vrfer: {failed} of {len(a.images)} images failed", file=sys.stderr)
        return 1
    return 0
