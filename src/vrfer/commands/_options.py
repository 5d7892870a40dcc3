"""What several commands share, declared once: the --model option and its one reading (`model_source`), --face,
--backend, --detector,
the post-processing options, --profile, and the one-line report of a problem with one input item."""

from __future__ import annotations

import sys

MODEL_HELP = ("a bundled model name, a .safetensors file or a training run folder{onnx} (default: {default}; "
              "`vrfer models` lists them)")


def add_model_arg(p, required: bool = False, allow_untrained: bool = False, onnx: bool = False) -> None:
    """--model (and, where a command may run random weights, --allow-untrained). onnx: the command also runs an
    exported .onnx file."""
    from ..pretrained import DEFAULT_MODEL
    text = MODEL_HELP.format(onnx=", or an exported .onnx file" if onnx else "",
                             default="none, required" if required else DEFAULT_MODEL)
    p.add_argument("--model", required=required, default=None if required else DEFAULT_MODEL, metavar="MODEL",
                   help=text)
    if allow_untrained:
        p.add_argument("--allow-untrained", action="store_true",
                       help="accept an architecture name (random weights); default: only trained models")


def model_source(a, backend: str = "torch"):
    """The one reading of --model (vrfer.inference.loader.resolve, the front door for models): a ModelSource, or one line
    that speaks the command's language (its options) when the model cannot be used."""
    from ..errors import VrferError
    from ..inference.loader import resolve
    allow = getattr(a, "allow_untrained", None)
    if str(a.model).endswith(".onnx") and not hasattr(a, "backend"):   # commands that run PyTorch only
        raise VrferError(f"--model {a.model}: this command needs the model's PyTorch weights (a bundled name, a "
                         ".safetensors file or a run folder), not an exported ONNX file")
    return resolve(a.model, backend, allow_untrained=bool(allow), option="--model",
                   untrained_option="--allow-untrained" if allow is not None else "")


FACE_HELP = {
    "detect": "detect: find the faces, as predict does{default}",
    "none": "none: each image is already a face crop (a non-square one is padded to a square with its edge pixels)"
            "{default}",
    "box": "x,y,w,h: a fixed face box in pixels (a fixed camera; may start with a minus sign)",
}


def add_face_arg(p, boxes: bool = True, default: str = "detect", note: str = "") -> None:
    """--face: how the face is found. boxes: the command also takes a fixed box x,y,w,h (predict, serve, batch,
    explain); else detect or none (commands that read labelled folders: evaluate, adapt, calibrate)."""
    kinds = ["detect", "none"] + (["box"] if boxes else [])
    text = "; ".join(FACE_HELP[k].format(default=" (default)" if k == default else "") for k in kinds)
    kw = {"metavar": "detect|none|x,y,w,h"} if boxes else {"choices": ["detect", "none"]}
    p.add_argument("--face", default=default, help=text + (f"; {note}" if note else ""), **kw)


def add_backend_arg(p) -> None:
    """--backend of the commands that run a model for answers (predict, serve, batch: vrfer.inference.loader)."""
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto (default): the int8 ONNX graph shipped with a bundled model (speed and accuracy: "
                        "docs/RESULTS.md, 'int8 classifier'), else PyTorch; torch: float32 PyTorch; onnx: float32 "
                        "onnxruntime (or the .onnx file given as --model)")


def add_detector_arg(p) -> None:
    """--detector: which registered face detector finds the faces under --face detect (vrfer.faces.registry)."""
    from ..faces.registry import DEFAULT_DETECTOR, list_detectors
    names = list_detectors()
    p.add_argument("--detector", choices=names, default=DEFAULT_DETECTOR, metavar="NAME",
                   help=f"the face detector with --face detect, a registered name: {', '.join(names)} (default: "
                        f"{DEFAULT_DETECTOR}, RetinaFace with BlazeFace's second opinion; blazeface: BlazeFace alone, "
                        "no keypoints, so the box's square is cut)")


def add_postprocess_args(p) -> None:
    """--prior, --prior-tau, --classes (vrfer.inference.postprocess.PostProcess)."""
    p.add_argument("--prior", default=None, metavar="train|uniform|FILE",
                   help="the class frequencies the answers assume: train (the training data's: the plain "
                        "model), uniform (balanced: probability moves from frequent to rare "
                        "classes), or a JSON file of 8 values in class order / {class: value}; "
                        "logit + tau * (log prior - log training prior) (default: the model's own setting, "
                        "chosen on FER+ valid: uniform with tau 0.25 for both bundled models)")
    p.add_argument("--prior-tau", type=float, default=None, metavar="TAU",
                   help="strength of the --prior shift (0: none, 1: full; default: the model's own "
                        "setting with no --prior, else 1)")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="answer only among these classes (the others get probability 0), e.g. "
                        "neutral,happiness,surprise,sadness,anger,disgust,fear")


def add_profile_arg(p) -> None:
    """--profile (vrfer.personal.calibration)."""
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="a person's calibration profile (made by `vrfer calibrate` for this --model); applied to "
                        "the representation the backend gives (PyTorch, or an ONNX graph with that output)")


def add_reference_arg(p) -> None:
    """--reference (vrfer.personal.reference): the wearer's face read as a change from their neutral face."""
    p.add_argument("--reference", metavar="auto|off|FILE", default=None,
                   help="read the wearer's face as a change from their neutral face (vrfer.personal.reference): auto (videos "
                        "and webcams: a running reference from the frames that look neutral; a photo is answered as "
                        "it is), off, or FILE, a profile carrying a reference (`vrfer calibrate neutral=relaxed.mp4`); "
                        "a --profile's own reference is used unless off (default: auto when the model has a "
                        "referenced head, as the bundled vrfer-lower has, else off)")


def reference_setting(a, source) -> str:
    """What --reference gives Recognizer(reference=...): the value given, or by default "auto" when the model
    (a vrfer.inference.loader.ModelSource) has a referenced head, else "off"."""
    if a.reference is not None:
        return a.reference
    from ..personal.reference import default_mode
    return default_mode(source.cfg)


def item_error(name: str, msg: str) -> None:
    """One input item's problem, one line on stderr; the rest of the batch goes on."""
    print(f"vrfer: {name}: {msg}", file=sys.stderr, flush=True)
