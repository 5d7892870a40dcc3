"""`vrfer export`: a trained model as an ONNX file (Unity Sentis, onnxruntime) plus its model card.

    vrfer export --model vrfer-lower --format onnx --out vrfer-lower.onnx
    vrfer export --model vrfer-lower --format onnx --quantize int8 --int8-data ferplus=DIR \
        --out src/vrfer/pretrained/vrfer-lower-int8.onnx          # the int8 graph vrfer ships (vrfer.export.int8)

writes vrfer-lower.onnx, vrfer-lower.json (the card as data: classes, preprocessing, opset, I/O names)
and vrfer-lower.md (the same for people, with C# to feed the model from Unity): vrfer.export.export_model.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VrferError
from ..options import int_in
from ._options import add_model_arg, add_postprocess_args, model_source


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (Unity Sentis / onnxruntime) with a model card",
                       description="Export a model to ONNX with its preprocessing in the file's metadata, and "
                                   "write a model card (FILE.json and FILE.md) beside it.")
    add_model_arg(p, required=True, allow_untrained=True)
    from ..export import FORMATS
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. vrfer-lower.onnx")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset, 9 up to the newest this PyTorch writes (default 15, the newest that "
                        "Unity Sentis reads)")
    add_postprocess_args(p)
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing onnxruntime's output with PyTorch's on sample faces")
    p.add_argument("--quantize", choices=["int8"], help="int8 static quantisation (onnxruntime, QDQ): faster, most "
                   "on CPUs with VNNI/AMX (docs/RESULTS.md, 'int8 classifier'); needs --int8-data")
    p.add_argument("--int8-data", metavar="ferplus=DIR",
                   help="faces that set the int8 ranges: a seeded sample of FER+ train faces under DIR")
    p.add_argument("--int8-faces", type=int_in(10, note="fewer cannot set the int8 ranges"), default=None,
                   metavar="N",
                   help="how many FER+ train faces set the int8 ranges (default 2000)")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..export import check_out, export
    from ..outputs import output_file
    from ..inference.postprocess import PostProcess

    out = Path(a.out)
    check_out(out, a.format)          # before loading anything
    if a.format != "onnx" and (a.quantize or a.opset is not None or a.int8_data or a.int8_faces is not None):
        raise VrferError("--opset, --quantize, --int8-data and --int8-faces go with --format onnx")
    opset = _opset(a) if a.format == "onnx" else None
    source = model_source(a)
    model = source.torch_model()
    post = PostProcess(model.cfg, a.prior, a.prior_tau, a.classes)
    if a.format != "onnx":            # another registered format (vrfer.export.register_format): its writer
        output_file(out)
        export(model, out, a.format, post=post)
        print(f"wrote {out} ({a.format})")
        return 0
    for path in (out, out.with_suffix(".json"), out.with_suffix(".md")):
        output_file(path)
    return _onnx(a, model, out, post, opset)


def _opset(a) -> int:
    from ..export.onnx import DEFAULT_OPSET, check_opset
    return check_opset(a.opset if a.opset is not None else DEFAULT_OPSET)


def _onnx(a, model, out: Path, post, opset: int) -> int:
    from ..export import export
    from ..export.int8 import parse_int8_data
    from ..export.onnx import SENTIS_MAX_OPSET
    if a.quantize and not a.int8_data:
        raise VrferError("--quantize int8 needs --int8-data ferplus=DIR (FER+ train faces set the int8 ranges)")
    if not a.quantize and (a.int8_data or a.int8_faces is not None):
        raise VrferError(f"{'--int8-data' if a.int8_data else '--int8-faces'} goes with --quantize int8")
    done = export(model, out, "onnx", opset=opset, post=post, check=not a.no_check,
                  int8_data=parse_int8_data(a.int8_data) if a.quantize else None,
                  int8_faces=a.int8_faces)
    check = done.card.get("check", {})
    if a.quantize:
        agree = f", same top class as float32 on {check['agreement']:.2%} of {check['faces']}" if check else ""
        what = f"int8, opset {opset}, {out.stat().st_size / 1e6:.1f} MB{agree}"
    else:
        c, h, w = model.cfg.input_shape
        diff = check.get("max_abs_diff_probs_vs_pytorch")
        what = (f"opset {opset}, input (batch, {c}, {h}, {w}), {model.cfg.input_mode}"
                + (f", max |onnx - torch| {diff:.1e}" if diff is not None else ""))
    print(f"wrote {out} ({what}) and its card {done.card_json.name}, {done.card_md.name}")
    if opset > SENTIS_MAX_OPSET:
        print(f"note: Unity Sentis reads opsets up to {SENTIS_MAX_OPSET}; use --opset {SENTIS_MAX_OPSET} for Unity")
    return 0
