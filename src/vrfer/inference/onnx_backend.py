"""The onnxruntime classifier, with the same interface as vrfer.inference.torch_backend.TorchClassifier: an exported vrfer
graph (vrfer.export.onnx: its outputs and metadata) or a .safetensors file exported once into the cache
(`cached_onnx`), and the int8 graph shipped beside a bundled model when it was made from the installed weights
(`bundled_int8`).

    >>> clf = load_classifier("vrfer-lower", "onnx")  # vrfer.inference.loader: exports once to the cache, then loads it
    >>> clf.predict_proba(crops)                     # uint8 (N, H, W) square faces -> (N, 8)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import VrferError
from ..export.onnx import DEFAULT_OPSET, EXPORT_FORMAT, REPRESENTATION, check_opset, export_bytes, export_onnx, module_of
from ..fingerprint import MODEL_SHA256_KEY, weights_fingerprint
from .preprocess import prepare
from ..models import ModelConfig
from ..datasets.base import cache_dir
from ..models.registry import bundled_models, pretrained_path
from ..threads import ort_options

QUANTIZATION_KEY = "vrfer_quantization"    # an int8 graph's metadata: how it was made (vrfer.export.int8)



def read_metadata(path) -> dict[str, str]:
    import onnx
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise VrferError(f"{path}: not a readable ONNX file ({e})") from None
    return {p.key: p.value for p in m.metadata_props}


def config_from_metadata(meta: dict[str, str], where: str = "ONNX model"):
    from dataclasses import replace

    if "vrfer_config" not in meta:
        raise VrferError(f"{where}: carries no vrfer config in its metadata (export it with `vrfer export`)")
    try:
        cfg = ModelConfig.from_json(meta["vrfer_config"])
        if not cfg.crop:   # exported before the config carried its crop: the rule its preprocessing spec states
            detect = json.loads(meta.get("vrfer_preprocessing", "{}")).get("square", {}).get("detect", {})
            cfg = replace(cfg, crop={"rule": detect.get("rule", "box")})
        return cfg
    except Exception as e:
        raise VrferError(f"{where}: bad vrfer config in its metadata ({e})") from None


# ------------------------------------------------------------------------------------------------- cache

def _file_sha256(path) -> str:
    """sha256 of a file's bytes: the cache's key (the file's config metadata shapes the export too; which
    weights a model is: vrfer.fingerprint)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise VrferError(f"{path}: cannot read model file ({e.strerror or e})") from None
    return h.hexdigest()


def cached_onnx(weights, opset: int = DEFAULT_OPSET) -> Path:
    """The float32 ONNX export of a .safetensors file, made once into the cache (keyed by the file's hash)."""
    opset = check_opset(opset)
    weights = Path(weights)
    if not weights.is_file():
        raise VrferError(f"{weights}: model file not found")
    key = hashlib.sha256(f"{_file_sha256(weights)}|{opset}|{EXPORT_FORMAT}|{torch.__version__}".encode()).hexdigest()
    out = cache_dir() / "onnx" / f"{weights.stem}-{key[:16]}-op{opset}.onnx"
    if not out.is_file():
        export_onnx(str(weights), out, opset)
    return out


# ---------------------------------------------------------------------------------------------- classifier

class OnnxClassifier:
    """Face crops -> probabilities with onnxruntime (CPU). Same interface as vrfer.inference.torch_backend.TorchClassifier.

    `model`: an .onnx file written by vrfer, or a model object (exported in memory). vrfer.inference.loader makes the
    file for a model name (the shipped int8 graph, or the float32 export in the cache).
    `.cfg` is rebuilt from the ONNX metadata; preprocessing is vrfer.inference.preprocess.prepare, as for PyTorch.
    """

    def __init__(self, model, intra_op_threads: int | None = None, tta_flip: bool = False,
                 opset: int = DEFAULT_OPSET, batch_size: int = 512):
        try:
            import onnxruntime as ort
        except ImportError:
            raise VrferError("onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort_options(intra_op_threads)   # None -> vrfer.threads.DEFAULT_THREADS, no spinning

        if isinstance(model, nn.Module):     # exported in memory (a model object, e.g. untrained)
            source, where = export_bytes(module_of(model), check_opset(opset)), f"model {model.cfg.name!r}"
        else:
            path = Path(model)
            if path.suffix != ".onnx":
                raise VrferError(f"{path}: OnnxClassifier runs an .onnx file or a model object; for a model name "
                                 "use vrfer.inference.loader.load_classifier(name, 'onnx')")
            if not path.is_file():
                raise VrferError(f"{path}: ONNX file not found")
            source, where = str(path), str(path)
        try:
            self.session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise VrferError(f"{where}: onnxruntime cannot load it ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.cfg = config_from_metadata(meta, where)
        self.path = source if isinstance(source, str) else None
        names = [o.name for o in self.session.get_outputs()]
        # files from before the representation output (or of a model without a final Linear) lack it
        self.has_representation = REPRESENTATION in names and "logits" in names
        # D of the representation (an int when the graph names it; a profile's rows must have D numbers)
        self.representation_width = next((o.shape[1] for o in self.session.get_outputs()
                                          if o.name == REPRESENTATION and len(o.shape) == 2), None)
        # the weights it was exported from (vrfer.fingerprint.model_fingerprint); None in older files
        self.model_sha256 = meta.get(MODEL_SHA256_KEY)
        self._output = "probs" if "probs" in names else names[0]
        self._softmax = self._output != "probs"
        self._input = self.session.get_inputs()[0].name
        self.tta_flip = tta_flip
        self.batch_size = batch_size

    def _run(self, x: torch.Tensor) -> np.ndarray:
        p = self.session.run([self._output], {self._input: x.numpy().astype(np.float32, copy=False)})[0]
        if self._softmax:
            p = torch.softmax(torch.from_numpy(p).float(), 1).numpy()
        return p

    def predict_proba(self, crops) -> np.ndarray:
        """uint8 face crops (N, H, W) -> probabilities (N, 8), float32."""
        crops = np.asarray(crops) if not isinstance(crops, torch.Tensor) else crops
        if crops.ndim == 2:
            crops = crops[None]
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                chunk = crops[i:i + self.batch_size]
                p = self._run(prepare(chunk, self.cfg))
                if self.tta_flip:
                    p = (p + self._run(prepare(chunk, self.cfg, flip_all=True))) / 2
                out.append(p)
        return (np.concatenate(out).astype(np.float32, copy=False) if out
                else np.zeros((0, len(self.cfg.classes)), np.float32))

    def logits_and_features(self, crops) -> tuple[np.ndarray, np.ndarray]:
        """uint8 face crops (N, H, W) -> (logits (N, C), representation (N, D)), float32, as
        vrfer.inference.representation.logits_and_features gives them from the PyTorch model."""
        if not self.has_representation:
            raise VrferError(f"{self.path or 'this ONNX model'}: has no `{REPRESENTATION}` output (exported by an "
                             "older vrfer): export it again to calibrate with it")
        crops = np.asarray(crops) if not isinstance(crops, torch.Tensor) else crops
        if crops.ndim == 2:
            crops = crops[None]
        logits, feats = [], []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = prepare(crops[i:i + self.batch_size], self.cfg).numpy().astype(np.float32, copy=False)
                lg, ft = self.session.run(["logits", REPRESENTATION], {self._input: x})
                logits.append(lg)
                feats.append(ft)
        if not logits:
            d = next(o.shape[1] for o in self.session.get_outputs() if o.name == REPRESENTATION)
            return (np.zeros((0, len(self.cfg.classes)), np.float32),
                    np.zeros((0, d if isinstance(d, int) else 0), np.float32))
        return (np.concatenate(logits).astype(np.float32, copy=False),
                np.concatenate(feats).astype(np.float32, copy=False))


# ------------------------------------------------------------------------------------------ int8 graphs

def quantization_info(path) -> dict | None:
    """The `vrfer_quantization` metadata of an ONNX file (None for a float model)."""
    v = read_metadata(path).get(QUANTIZATION_KEY)
    return json.loads(v) if v else None


def matches_weights(path, weights_file) -> bool:
    """Was the int8 file at `path` made from exactly these float weights? (The fingerprint it records from the
    float export, vrfer.fingerprint, against the file's.)"""
    recorded = read_metadata(path).get(MODEL_SHA256_KEY)
    return bool(recorded) and quantization_info(path) is not None and recorded == weights_fingerprint(weights_file)


def bundled_int8(name: str, weights=None) -> Path | None:
    """The int8 graph shipped for the bundled model `name` (vrfer/pretrained/NAME-int8.onnx) when it was made from
    the very weights file `weights` (the one vrfer.inference.loader resolved for it; None: the bundled file); None otherwise
    (no such file, not a bundled name, or stale weights)."""
    from importlib import resources

    if name not in bundled_models():
        return None
    weights = weights if weights is not None else pretrained_path(bundled_models()[name].weights)
    path = Path(str(resources.files("vrfer.pretrained").joinpath(f"{name}-int8.onnx")))
    if not path.is_file() or not Path(weights).is_file() or not matches_weights(path, weights):
        return None
    return path
