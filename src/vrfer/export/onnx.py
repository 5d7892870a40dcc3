"""ONNX export of a vrfer model (`vrfer export --format onnx`; the runtime side is vrfer.inference.onnx_backend).

The exported graph takes the *normalised* model input (N, C, H, W) float32 and returns `logits` and
`probs` (softmax), both (N, 8) in vrfer's class order, and `representation` (N, D): the input of the
model's last layer (vrfer.inference.representation), what a calibration profile (vrfer.personal.calibration) is applied to.
Everything needed to build that input from a face crop is written into the ONNX file's metadata
(metadata_props):

    vrfer_config         the vrfer ModelConfig as JSON (what OnnxClassifier rebuilds `.cfg` from)
    vrfer_preprocessing  JSON (vrfer.inference.pipeline_spec.preprocessing_spec, written from the code): how an image
                         becomes the input (loading, gray formula, face square, padding, resize, input
                         mode, mean/std) and what is done to the output (class prior, class subset);
                         examples/onnx_client.py follows it without vrfer
    classes              the class names, comma separated, in output order
    vrfer_model_sha256   vrfer.fingerprint.model_fingerprint of the weights exported: a profile is used
                         with this file only when its model_sha256 is this

Opset 15 by default: Unity Sentis imports opsets 7-15 and onnxruntime runs every opset from 7 on.
The export uses PyTorch's TorchScript exporter (`dynamo=False`): since PyTorch 2.9 the default
torch.export-based exporter needs the onnxscript package, and for these plain CNNs (Conv, Relu,
MaxPool, GlobalAveragePool, Gemm, Softmax; BatchNorm folded into Conv) both give the same graph.

    >>> from vrfer.export.onnx import export_onnx
    >>> export_onnx("vrfer-lower", "vrfer-lower.onnx")
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import VrferError, native_stderr_silenced
from ..fingerprint import model_fingerprint, MODEL_SHA256_KEY
from ..models.registry import create_model
from ..inference.pipeline_spec import preprocessing_spec as pipeline_spec
from ..inference.representation import grabbed_representation
from ..personal.calibration import PROFILE_FORMAT, PROFILE_FORMULA

DEFAULT_OPSET = 15          # highest opset Unity Sentis imports (7-15)
SENTIS_MAX_OPSET = 15
MIN_OPSET = 9
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "probs")
EXPORT_FORMAT = "4"         # bump when the exported graph or its metadata changes (cache key too)
REPRESENTATION = "representation"   # third output, after OUTPUT_NAMES (their order is what clients rely on)

def representation_dim(model: nn.Module) -> int | None:
    """D of the model's representation, or None for a model without a final Linear `classifier` (it is
    exported without the representation output: it cannot be calibrated anyway)."""
    layer = getattr(model, "classifier", None)
    return layer.in_features if isinstance(layer, nn.Linear) else None


def output_names(rep_dim: int | None) -> list[str]:
    return [*OUTPUT_NAMES, *([REPRESENTATION] if rep_dim else [])]


class _WithProbs(nn.Module):
    """model -> (logits, softmax(logits)[, representation]): Unity code reads probabilities without its own
    softmax, and calibrates with the representation (vrfer.inference.representation)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.with_representation = representation_dim(model) is not None

    def forward(self, x):
        if not self.with_representation:
            logits = self.model(x)
            return logits, torch.softmax(logits, dim=1)
        with grabbed_representation(self.model) as grabbed:
            logits = self.model(x)
        return logits, torch.softmax(logits, dim=1), grabbed[0]


def max_opset() -> int:
    try:
        from torch.onnx import _constants
        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))
    except Exception:  # pragma: no cover - private module moved
        return 17


def check_opset(opset: int) -> int:
    hi = max_opset()
    if not MIN_OPSET <= int(opset) <= hi:
        raise VrferError(f"opset {opset} not supported: use {MIN_OPSET}-{hi} "
                         f"(Unity Sentis reads up to {SENTIS_MAX_OPSET}; default {DEFAULT_OPSET})")
    return int(opset)


# ----------------------------------------------------------------------------------------------- metadata

def preprocessing_spec(cfg, post=None, rep_dim: int | None = None) -> dict:
    """vrfer.inference.pipeline_spec.preprocessing_spec (image -> face crop -> input -> answer, as data) plus the graph's
    input and output names, and (rep_dim: the graph has the representation output) how a calibration
    profile is applied: what the exported file carries as "vrfer_preprocessing"."""
    spec = {**pipeline_spec(cfg, post), "input_name": INPUT_NAME, "output_names": output_names(rep_dim)}
    if rep_dim:
        spec["representation"] = {
            "output": REPRESENTATION, "shape": ["batch", int(rep_dim)], "dtype": "float32",
            "meaning": "the input of the model's last layer (vrfer.inference.representation): logits = representation "
                       "@ W.T + b with the model's own last layer W, b"}
        spec["calibration"] = {
            "profile": f"a JSON file with \"format\": \"{PROFILE_FORMAT}\" (vrfer calibrate): model_sha256, "
                       "classes (the enrolled ones), weight (one row of D numbers per enrolled class), bias",
            "check": f"use a profile only when its model_sha256 equals this file's {MODEL_SHA256_KEY} metadata",
            "formula": PROFILE_FORMULA + "; the probabilities are the softmax of those logits (float64 in "
                       "vrfer, the profile's numbers read as float32)"}
    return spec


def onnx_metadata(cfg, opset: int, post=None, rep_dim: int | None = None,
                  model_sha256: str | None = None) -> dict[str, str]:
    pre = preprocessing_spec(cfg, post, rep_dim)
    pre["opset"] = int(opset)
    meta = {
        "vrfer_config": pinned_crop(cfg).to_json(),
        "vrfer_preprocessing": json.dumps(pre),
        "classes": ",".join(cfg.classes),
        "input_mode": cfg.input_mode,
        "vrfer_format": EXPORT_FORMAT,
    }
    if model_sha256:
        meta[MODEL_SHA256_KEY] = model_sha256
    return meta


def _drop_identities(m) -> None:
    """Identity nodes on initializers (the exporter makes them for equal constants) -> plain initializers."""
    from onnx import numpy_helper
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            m.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    if len(keep) != len(m.graph.node):
        del m.graph.node[:]
        m.graph.node.extend(keep)


# ------------------------------------------------------------------------------------------------- export

@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 for a moment: on failure the TorchScript exporter's C++ logger prints the
    whole graph (torch switches its ONNX log on for every export); our error says what failed instead.
    The log goes to std::cout by default, which is buffered: point it at the unbuffered std::cerr."""
    try:
        torch._C._jit_set_onnx_log_output_stream("stderr")
    except Exception:  # pragma: no cover - private API gone
        pass
    with native_stderr_silenced():
        yield


def export_bytes(model: nn.Module, opset: int, post=None) -> bytes:
    cfg = model.cfg
    wrapped = _WithProbs(model)
    rep_dim = representation_dim(model)
    outputs = output_names(rep_dim)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dummy = torch.zeros(2, *cfg.input_shape, device=device)
    buf = io.BytesIO()
    kwargs = dict(input_names=[INPUT_NAME], output_names=outputs, opset_version=opset,
                  dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *outputs)},
                  do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # TorchScript exporter: the dynamo one needs onnxscript
    try:
        with warnings.catch_warnings(), _quiet_fd2():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (dummy,), buf, **kwargs)
    except Exception as e:  # the exporter's message may carry the whole graph: keep its first line
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        for cut in (" Please feel free", " [Caused by"):
            first = first.split(cut)[0]
        first = first[:300]
        raise VrferError(f"ONNX export of {cfg.name!r} ({cfg.input_mode}, input {cfg.input_shape}) failed: "
                         f"{type(e).__name__}: {first}") from None
    finally:
        model.train(was_training)

    import onnx
    m = onnx.load_from_string(buf.getvalue())
    _drop_identities(m)
    m.producer_name = "vrfer"
    m.doc_string = (f"vrfer facial expression classifier {cfg.name!r} ({cfg.arch}, input mode {cfg.input_mode}). "
                    + preprocessing_spec(cfg)["formula"])
    del m.metadata_props[:]
    for k, v in onnx_metadata(cfg, opset, post, rep_dim, model_fingerprint(model)).items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def export_onnx(model, path, opset: int = DEFAULT_OPSET, post=None) -> Path:
    """Write `model` (nn.Module with .cfg, registry name or .safetensors path) as an ONNX file.

    Dynamic batch axis; input `input` (N, C, H, W) float32, outputs `logits` and `probs` (N, 8) and
    `representation` (N, D).
    The preprocessing is in the file's metadata (see the module docstring), with the post-processing
    `post` (vrfer.inference.postprocess.PostProcess; default vrfer's: the plain model) that clients should apply.
    """
    opset = check_opset(opset)
    model = module_of(model)
    data = export_bytes(model, opset, post)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # unique: two processes may fill one cache
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        raise VrferError(f"{path}: cannot write ONNX file ({e.strerror or e})") from None
    return path


def pinned_crop(cfg):
    """The config with its crop geometry written out in full, so that an exported file keeps the crop it was
    exported with when vrfer's defaults change (vrfer.faces.CROP_RULE became "keypoints" on 2026-12-03)."""
    from dataclasses import asdict, replace
    geo = asdict(cfg.crop_geometry)
    geo["kp_centre"] = list(geo["kp_centre"])
    return replace(cfg, crop=geo)


def module_of(model) -> nn.Module:
    """A model object as it is (it must carry a vrfer config); a trained model's name, file or run folder -> its
    PyTorch model (an architecture name is refused: build it with create_model(name, pretrained=False))."""
    if isinstance(model, nn.Module):
        if not hasattr(model, "cfg"):
            raise VrferError("model carries no vrfer config (.cfg); create it with vrfer.create_model")
        return model
    return create_model(str(model))
