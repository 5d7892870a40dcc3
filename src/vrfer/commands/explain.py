"""`vrfer explain`: Grad-CAM pictures (as in the paper's Figure 1) for face images.

    vrfer explain faces/*.png --out cams/                  # each image is a face crop
    vrfer explain photo.jpg --face detect --out cams/      # find the faces first
    vrfer explain photo.jpg --face 120,80,200,200 --out cams/
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import VrferError


def add_parser(sub) -> None:
    from ..pretrained import DEFAULT_MODEL
    p = sub.add_parser("explain", help="Grad-CAM heat maps of what the model looks at (PNG per face)",
                       description="Draw the face as the model gets it (the headset's part dark) beside "
                                   "its Grad-CAM heat map and the predicted expression, one PNG per face.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, help="folder for the PNGs (<name>_gradcam.png)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registry name, .safetensors file or run folder (default {DEFAULT_MODEL})")
    p.add_argument("--face", default="detect", metavar="none|detect|x,y,w,h",
                   help="none: the image is the face crop (non-square: its centre square); detect: find "
                        "faces in a photo; x,y,w,h: the face box in pixels (default detect, as vrfer predict)")
    p.add_argument("--target", default=None,
                   help="class to explain (e.g. happiness); default the predicted one. The PNG's title names "
                        "the class explained and its probability")
    p.add_argument("--allow-untrained", action="store_true",
                   help="accept an architecture name (random weights); default: only trained models")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..explain import explain_file, parse_face
    from ..models import as_model
    from ..models.registry import require_trained
    from ..outputs import output_dir

    face = parse_face(a.face)
    if not a.allow_untrained:
        require_trained(a.model)
    model = as_model(a.model)
    if a.target is not None and a.target not in model.cfg.classes:
        raise VrferError(f"unknown class {a.target!r}; classes: {', '.join(model.cfg.classes)}")
    existed = Path(a.out).exists()
    out = output_dir(a.out)

    failed, taken, written = 0, set(), 0
    for path in a.images:
        try:
            for png, label, p in explain_file(model, path, out, face, a.target, taken):
                print(f"{path}: {label} {p:.2f} -> {png}")
                written += 1
        except VrferError as e:
            failed += 1
            print(f"vrfer: error: {e}", file=sys.stderr)
    if not written and not existed:
        out.rmdir()  # nothing to show: leave no empty folder behind
    if failed:   # as vrfer predict: some inputs could not be used -> 1
        if failed < len(a.images):
            print(f"vrfer: {failed} of {len(a.images)} images failed", file=sys.stderr)
        return 1
    return 0
