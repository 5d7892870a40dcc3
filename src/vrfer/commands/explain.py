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
    p = sub.add_parser("explain", help="Grad-CAM heat maps of what the model looks at (PNG per face)",
                       description="Draw the face as the model gets it (the headset's part dark) beside "
                                   "its Grad-CAM heat map and the predicted expression, one PNG per face.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, help="folder for the PNGs (<name>_gradcam.png)")
    p.add_argument("--model", default="vrfer-lower",
                   help="registry name, .safetensors file or run folder (default vrfer-lower)")
    p.add_argument("--face", default="detect", metavar="none|detect|x,y,w,h",
                   help="none: the image is the face crop (non-square: its centre square); detect: find "
                        "faces in a photo; x,y,w,h: the face box in pixels (default detect, as vrfer predict)")
    p.add_argument("--target", default=None,
                   help="class to explain (e.g. happiness); default the predicted one")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..explain import explain_file, parse_face
    from ..models import as_model

    face = parse_face(a.face)
    model = as_model(a.model)
    if a.target is not None and a.target not in model.cfg.classes:
        raise VrferError(f"unknown class {a.target!r}; classes: {', '.join(model.cfg.classes)}")
    out = Path(a.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VrferError(f"{out}: cannot create the output folder ({e.strerror or e})") from None

    failed, taken = 0, set()
    for path in a.images:
        try:
            for png, label, p in explain_file(model, path, out, face, a.target, taken):
                print(f"{path}: {label} {p:.2f} -> {png}")
        except VrferError as e:
            failed += 1
            print(f"vrfer: error: {e}", file=sys.stderr)
    if failed:
        if failed < len(a.images):
            print(f"vrfer: {failed} of {len(a.images)} images failed", file=sys.stderr)
        return 2
    return 0
