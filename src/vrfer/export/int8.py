"""int8 classifier: static quantisation of the exported ONNX graph with onnxruntime, its ranges set on FER+ faces.

    vrfer export --model vrfer-lower --format onnx --quantize int8 --int8-data ferplus=../shared/data/ferplus \\
        --out src/vrfer/pretrained/vrfer-lower-int8.onnx

How (onnxruntime.quantization, measured fastest here; docs/RESULTS.md): QDQ format, weights int8 per
output channel, activations uint8 with ranges from MinMax calibration on RANGE_FACES FER+ train
faces (a seeded sample, prepared exactly as for inference: vrfer.inference.preprocess.prepare). onnxruntime then
runs the convolutions as int8 matrix products (VNNI / AMX on CPUs that have them).

The int8 file keeps the float model's vrfer metadata (config, preprocessing: OnnxClassifier and Unity read
it the same way, and `vrfer_model_sha256`, the fingerprint of the float weights it was made from: vrfer.fingerprint)
and adds `vrfer_quantization`: how it was made. A shipped int8 file is never used with weights it was not made
from (vrfer.inference.onnx_backend.matches_weights).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import VrferError, native_stderr_silenced
from ..datasets.ferplus import load_ferplus
from ..inference.onnx_backend import config_from_metadata, OnnxClassifier, QUANTIZATION_KEY, read_metadata
from .onnx import DEFAULT_OPSET, export_onnx, INPUT_NAME
from ..inference.preprocess import prepare
from ..inference.torch_backend import TorchClassifier

RANGE_FACES = 2000
RANGE_SEED = 0


def range_faces(root, n: int = RANGE_FACES, seed: int = RANGE_SEED) -> np.ndarray:
    """A seeded sample of n FER+ train faces, uint8 (n, 48, 48)."""
    train = load_ferplus(root, "train", "majority")
    if len(train.images) == 0:
        raise VrferError(f"{root}: no FER+ train faces to set the int8 ranges on")
    idx = np.sort(np.random.default_rng(seed).choice(len(train.images), min(n, len(train.images)), replace=False))
    return np.ascontiguousarray(train.images[idx])


def parse_int8_data(text: str) -> str:
    """'ferplus=DIR' -> DIR (the only data for the int8 ranges so far)."""
    name, sep, root = str(text).partition("=")
    if not sep or name != "ferplus" or not root:
        raise VrferError(f"--int8-data {text!r}: expected ferplus=DIR (FER+ train faces set the int8 ranges)")
    return root


def quantize_int8(float_onnx, out, faces: np.ndarray, ranges_from: str = "") -> Path:
    """Write an int8 (QDQ) version of a vrfer float32 ONNX file, its activation ranges set on uint8 face crops (N, H, W)
    (onnxruntime's "calibration"; vrfer keeps that word for a person's profile, vrfer.personal.calibration)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process


    meta = read_metadata(float_onnx)
    cfg = config_from_metadata(meta, str(float_onnx))
    x = prepare(faces, cfg).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self, batch: int = 100):
            self.batches = iter([{INPUT_NAME: x[i:i + batch]} for i in range(0, len(x), batch)])

        def get_next(self):
            return next(self.batches, None)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "pre.onnx"
        tmp = Path(d) / "int8.onnx"
        with native_stderr_silenced():
            quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
            # the classifier head stays float32: quantised, the probabilities would come in steps of 1/255
            # (0.0 for every unlikely class); it is 0.01% of the work
            head = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in ("Gemm", "MatMul", "Softmax")]
            # reduce_range: 7-bit weights. CPUs without VNNI (AVX2 only) multiply u8 x s8 pairs into int16
            # (vpmaddubsw), which saturates with full 8-bit weights (measured: docs/RESULTS.md, "int8 classifier")
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head)
        m = onnx.load(str(tmp))
    del m.metadata_props[:]
    info = {"dtype": "int8", "format": "QDQ", "weights": "int8 per channel, 7-bit range", "activations": "uint8 per tensor",
            "float32": "the classifier head (Gemm, Softmax)",
            "calibration": ranges_from or f"{len(faces)} faces", "calibrate_method": "MinMax"}
    for k, v in {**meta, QUANTIZATION_KEY: json.dumps(info)}.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "vrfer"
    m.doc_string = (m.doc_string or "") + " int8 (onnxruntime static quantisation, QDQ)."
    tmp_out = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        onnx.save(m, str(tmp_out))
        tmp_out.replace(out)
    except OSError as e:
        raise VrferError(f"{out}: cannot write ONNX file ({e.strerror or e})") from None
    return out


def quantize_model(model, out, root, n: int = RANGE_FACES, opset: int | None = None, post=None) -> Path:
    """The int8 file of a model object: its float32 export (vrfer.export.onnx.export_onnx, with `post`, a
    vrfer.inference.postprocess.PostProcess) quantised with ranges from n FER+ train faces under `root`; it records the
    fingerprint of the model's weights, as every export does."""
    faces = range_faces(root, n)
    with tempfile.TemporaryDirectory() as d:
        f32 = export_onnx(model, Path(d) / "float32.onnx", DEFAULT_OPSET if opset is None else opset, post)
        return quantize_int8(f32, out, faces, ranges_from=f"{len(faces)} FER+ train faces (seed {RANGE_SEED})")


CHECK_FACES = 1000        # FER+ valid faces the int8 file is checked on
MIN_AGREEMENT = 0.95      # same top class as float32 on at least this share of them, or the file is refused


def check_int8(model, path, root) -> dict:
    """Compare the int8 file at `path` with the float32 PyTorch model on CHECK_FACES FER+ valid faces under
    `root`: {"faces", "agreement" (same top class), "max_abs_diff" (of the probabilities)}. VrferError below
    MIN_AGREEMENT (a broken quantisation)."""
    valid = load_ferplus(root, "valid", "majority").images[:CHECK_FACES]
    p8 = OnnxClassifier(str(path)).predict_proba(valid)
    p32 = TorchClassifier(model).predict_proba(valid)
    check = {"faces": f"{len(valid)} FER+ valid faces", "agreement": float((p8.argmax(1) == p32.argmax(1)).mean()),
             "max_abs_diff": float(np.abs(p8 - p32).max())}
    if check["agreement"] < MIN_AGREEMENT:
        raise VrferError(f"{path}: the int8 model disagrees with the float32 one on "
                         f"{1 - check['agreement']:.1%} of FER+ valid faces (broken quantisation?)")
    return check


__all__ = ["RANGE_FACES", "range_faces", "parse_int8_data", "quantize_int8", "quantize_model", "check_int8"]
