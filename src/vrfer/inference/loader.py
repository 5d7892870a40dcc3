"""From what a user names as the model to everything needed to run it, decided once per start.

A model spec is a bundled model's name, a .safetensors file, a training run folder, an exported .onnx file, or
(from the API) a model object. `resolve` reads it once into a ModelSource: the config (input size, channels,
mean/std, input mode, crop geometry), the weights file, the ONNX graph onnxruntime runs (the shipped int8 graph,
the .onnx file given, or the float32 export in the cache), which backend answers, and which weights these are (`fingerprint`, vrfer.fingerprint).
The classifiers, the pipeline, the server and the commands take a ModelSource, not a name:

    >>> from vrfer.inference.loader import resolve
    >>> src = resolve("vrfer-lower")                 # backend "auto": the shipped int8 graph where it fits
    >>> src.backend, src.graph, src.version
    >>> clf = src.classifier(threads=1)              # .cfg, .predict_proba(crops)

Backends: "auto" (an .onnx file runs as it is; a bundled model runs its shipped int8 graph when that was made
from the installed weights, vrfer.inference.onnx_backend.bundled_int8; else PyTorch float32), "torch" (PyTorch float32),
"onnx" (onnxruntime: the .onnx file given, or the model's float32 export, made once into the cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from ..errors import VrferError
from ..models.registry import build, load_checkpoint, resolve_model, resolve_trained
from ..files import regular_file
from .onnx_backend import bundled_int8, cached_onnx, config_from_metadata, OnnxClassifier, read_metadata
from .torch_backend import TorchClassifier

BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class ModelSource:
    """Everything needed to run one model (see the module docstring); made by `resolve`."""
    spec: str                     # what the user named (for messages)
    cfg: object                   # vrfer.models.ModelConfig
    backend: str                  # "torch" or "onnx": what answers
    weights: Path | None = None   # the .safetensors file (None: an .onnx file, or a model object)
    graph: Path | None = None     # the ONNX file onnxruntime runs (backend "onnx"; None: a model object's export)
    module: object = field(default=None, compare=False, repr=False)   # a model object given by the caller

    @property
    def is_onnx_file(self) -> bool:
        """The model is an exported .onnx file: no PyTorch weights behind it."""
        return self.weights is None and self.module is None

    @cached_property
    def fingerprint(self) -> str | None:
        """Which weights these are (vrfer.fingerprint, the one hash): of the weights file, the model object, or
        as an exported .onnx file records it (None for a file exported by an older vrfer)."""
        from ..fingerprint import (
            MODEL_SHA256_KEY,
            model_fingerprint,
            weights_fingerprint,
        )
        if self.module is not None:
            return model_fingerprint(self.module)
        if self.weights is not None:
            return weights_fingerprint(self.weights)
        return read_metadata(self.graph).get(MODEL_SHA256_KEY)

    @property
    def version(self) -> str:
        """The first 12 hex digits of the fingerprint ("unknown" for an .onnx file that records none)."""
        return self.fingerprint[:12] if self.fingerprint else "unknown"

    def torch_model(self):
        """The PyTorch model of these weights (loaded anew each call; a model object as it is)."""
        if self.module is not None:
            return self.module
        if self.is_onnx_file:
            raise VrferError(f"{self.spec}: an ONNX file holds no PyTorch model; calibrate with the model's name or "
                             ".safetensors file")
        return load_checkpoint(self.weights)

    def as_torch(self) -> "ModelSource":
        """The same weights run by PyTorch float32 (what a calibration falls back to beside an older graph)."""
        if self.is_onnx_file:
            raise VrferError(f"{self.spec}: an ONNX file runs with --backend onnx (or auto), not torch")
        return replace(self, backend="torch", graph=None)

    def classifier(self, threads: int | None = None, tta_flip: bool = False):
        """The classifier of this source: .cfg, .predict_proba(crops), .logits_and_features(crops)."""
        if self.backend == "onnx":
            return OnnxClassifier(self.module if self.graph is None else self.graph, intra_op_threads=threads,
                                  tta_flip=tta_flip)
        return TorchClassifier(self.torch_model(), tta_flip=tta_flip)


def resolve(model, backend: str = "auto", allow_untrained: bool = False, option: str = "",
            untrained_option: str = "") -> ModelSource:
    """The front door for models: a model spec (bundled name, .safetensors file, run folder, .onnx file, or a
    model object with .cfg) and a backend -> ModelSource. Every caller (commands, API, server, training, export)
    comes in here. VrferError with one sentence for an unknown name, a missing file, an architecture without
    trained weights, or a backend the model cannot run on.
    allow_untrained: an architecture name is built with fresh (random) weights instead of refused (the commands'
    --allow-untrained; the API's `create_model(name, pretrained=False)`). option: the command-line option that
    named the model ("--model") and the one that accepts an architecture, where the command has it
    ("--allow-untrained"), so that a refusal speaks the command's language; empty: the API's.
    A ModelSource is returned as it is."""
    if isinstance(model, ModelSource):
        return model
    if backend not in BACKENDS:
        raise VrferError(f"unknown backend {backend!r}; expected {', '.join(BACKENDS)}")
    if not isinstance(model, (str, os.PathLike)):
        if not hasattr(model, "state_dict"):    # not a network at all (None, 5): say what a model is
            raise VrferError(f"model={type(model).__name__}: expected a model name (e.g. 'vrfer-lower'), a "
                             ".safetensors or .onnx path, a training run folder or a model from vrfer.create_model")
        if not hasattr(model, "cfg"):
            raise VrferError("model carries no vrfer config (.cfg); create it with vrfer.create_model or "
                             "vrfer.load_model")
        return ModelSource(getattr(model.cfg, "name", "model"), model.cfg,
                           "onnx" if backend == "onnx" else "torch", module=model)
    spec = str(model)
    if spec.endswith(".onnx"):
        return _onnx_file(spec, backend)
    if allow_untrained and resolve_model(spec).weights is None:      # an architecture, as asked
        module = build(resolve_model(spec).cfg)
        return ModelSource(spec, module.cfg, "onnx" if backend == "onnx" else "torch", module=module)
    cfg, weights = resolve_trained(spec, option, untrained_option)
    if backend == "auto":
        int8 = bundled_int8(spec, weights)
        return ModelSource(spec, cfg, "onnx" if int8 else "torch", weights, int8)
    if backend == "onnx":
        return ModelSource(spec, cfg, "onnx", weights, cached_onnx(weights))
    return ModelSource(spec, cfg, "torch", weights)


def torch_model(model, allow_untrained: bool = False):
    """The PyTorch module of a model spec or object (what the API's evaluate, explain, adapt, export run):
    resolve(model, "torch", allow_untrained).torch_model()."""
    return resolve(model, "torch", allow_untrained).torch_model()


def _onnx_file(spec: str, backend: str) -> ModelSource:
    if backend == "torch":
        raise VrferError(f"{spec}: an ONNX file runs with --backend onnx (or auto), not torch")
    path = Path(spec)
    regular_file(path, "ONNX file")
    return ModelSource(spec, config_from_metadata(read_metadata(path), spec), "onnx", None, path)


def load_classifier(model, backend: str = "auto", tta_flip: bool = False, threads: int | None = None):
    """resolve(model, backend).classifier(threads, tta_flip): the classifier of a model spec in one call."""
    return resolve(model, backend).classifier(threads, tta_flip)
