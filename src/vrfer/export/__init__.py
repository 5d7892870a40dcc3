"""A trained model as an ONNX file (Unity Sentis, onnxruntime) with its model card beside it.

    >>> from vrfer.export import export_model
    >>> export_model(create_model("vrfer-lower"), "vrfer-lower.onnx")          # float32, checked against PyTorch
    >>> export_model(model, "vrfer-lower-int8.onnx", int8_data="../shared/data/ferplus")   # int8 (vrfer.export.int8)

Each writes FILE.onnx, FILE.json (the card as data: classes, preprocessing, opset, I/O names) and FILE.md (the
same for people, with C# to feed the model from Unity): vrfer.export.modelcard. The preprocessing in the file is
vrfer.inference.pipeline_spec.preprocessing_spec: written from the code that `vrfer predict` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..errors import VrferError

MAX_FLOAT_DIFF = 1e-3     # onnxruntime and PyTorch probabilities further apart than this: the export is refused


class Exported(NamedTuple):
    onnx: Path
    card_json: Path
    card_md: Path
    card: dict


def sample_faces(n: int = 8, size: int = 48):
    """Smooth face-like crops (deterministic) for the export check."""
    import numpy as np
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = 90 + 60 * np.exp(-(((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2))
        f -= 70 * np.exp(-(((xx - 0.5) / rng.uniform(0.1, 0.2)) ** 2 + ((yy - rng.uniform(0.7, 0.8)) / 0.04) ** 2))
        f += rng.normal(0, 8, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


def check_float(model, path) -> float:
    """Largest difference between the probabilities of the float32 ONNX file at `path` and of the PyTorch model
    on sample faces; VrferError above MAX_FLOAT_DIFF."""
    from ..inference.torch_backend import TorchClassifier
    from ..inference.onnx_backend import OnnxClassifier
    faces = sample_faces(8, model.cfg.image_size)
    p_onnx = OnnxClassifier(str(path)).predict_proba(faces)
    p_torch = TorchClassifier(model).predict_proba(faces)
    max_diff = float(abs(p_onnx - p_torch).max())
    if max_diff > MAX_FLOAT_DIFF:
        raise VrferError(f"{path}: onnxruntime and PyTorch disagree (max abs diff {max_diff:.2g})")
    return max_diff


def export_model(model, out, opset: int | None = None, post=None, check: bool = True, int8_data=None,
                 int8_faces: int | None = None) -> Exported:
    """Write a model object (with .cfg) as the ONNX file `out` and its model card (out.json, out.md).

    post: the post-processing the file records (vrfer.inference.postprocess.PostProcess; None: the plain model).
    int8_data: a FER+ root: the file is int8 (vrfer.export.int8), its ranges set by int8_faces
    (default vrfer.export.int8.RANGE_FACES) train faces. Every file records the fingerprint of the weights
    (vrfer.fingerprint). check: compare the file with the PyTorch model (float32: on sample
    faces, to MAX_FLOAT_DIFF; int8: on FER+ valid faces, vrfer.export.int8.check_int8)."""
    from .modelcard import model_card, write_card
    from .onnx import DEFAULT_OPSET, check_opset, export_onnx
    opset = check_opset(DEFAULT_OPSET if opset is None else opset)
    out = Path(out)
    if int8_data is None:
        export_onnx(model, out, opset, post)
        card = model_card(model.cfg, out, opset, max_diff=check_float(model, out) if check else None)
    else:
        from .int8 import RANGE_FACES, check_int8, quantize_model
        n = RANGE_FACES if int8_faces is None else int8_faces
        quantize_model(model, out, int8_data, n, opset, post)
        card = model_card(model.cfg, out, opset, check=check_int8(model, out, int8_data) if check else None)
    json_path, md_path = write_card(out, model.cfg, card)
    return Exported(out, json_path, md_path, card)


class Format(NamedTuple):
    """One export format: its file suffix and the function that writes a model object in it (model, out, **kw)."""
    suffix: str
    write: object


# the export formats `vrfer export --format` offers: a new one is one entry here (register_format)
FORMATS: dict[str, Format] = {"onnx": Format(".onnx", export_model)}


def register_format(name: str, suffix: str, write) -> None:
    """Offer another export format (e.g. TorchScript or TFLite) to `vrfer export --format` and `export`."""
    FORMATS[name] = Format(suffix, write)


def check_out(out, format: str) -> Format:
    """The format, once `out` is known to be a file of it (VrferError otherwise)."""
    if format not in FORMATS:
        raise VrferError(f"unknown export format {format!r}; expected {', '.join(FORMATS)}")
    if Path(out).suffix.lower() != FORMATS[format].suffix:
        raise VrferError(f"{out}: a {format} file should end in {FORMATS[format].suffix}")
    return FORMATS[format]


def export(model, out, format: str = "onnx", **kw):
    """Write `model` in `format` (one of FORMATS) to `out`; kw go to the format's writer (for onnx: export_model)."""
    return check_out(out, format).write(model, out, **kw)
