"""One registry for architectures and bundled trained models (after timm's create_model).

Every model carries its config (`model.cfg`): input crop size, channels, mean/std, input mode.
Bundled models are safetensors files in vrfer/pretrained/ whose metadata holds that config.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, NamedTuple

from torch import nn

from ..classes import CLASSES
from ..errors import VrferError
from ..faces.geometry import CropGeometry
from ..occlusion import visible_rows
from ..outputs import public_mode
from ..pretrained import DEFAULT_MODEL
from ..files import regular_file
from .importers import load_backbone_weights
from ..personal.profile_check import check_head


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: str
    image_size: int              # side of the square face crop the input is made from
    in_chans: int                # 1 = grayscale, 3 = RGB (grayscale faces are replicated)
    mean: tuple                  # per channel, in 0-255 pixel units
    std: tuple
    input_mode: str = "full"     # full | upper-occluded | visible-half (see vrfer.occlusion)
    occlusion: float = 0.5       # fraction of rows hidden by the headset
    description: str = ""
    trained_on: str = ""         # empty for an architecture with fresh weights
    weights: str = ""            # file in vrfer/pretrained for a bundled model
    arch_kwargs: dict = field(default_factory=dict)
    classes: tuple = CLASSES
    extra: dict = field(default_factory=dict)  # results, recipe, ... carried with bundled weights
    crop: dict = field(default_factory=dict)   # how a detected face's square is placed (vrfer.faces.CropGeometry);
                                               # keys left out take CropGeometry's defaults

    @property
    def crop_geometry(self) -> CropGeometry:
        return CropGeometry.of(self.crop)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h = self.image_size
        if self.input_mode == "visible-half":
            h -= visible_rows(self.image_size, self.occlusion)
        return (self.in_chans, h, self.image_size)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["mean"], d["std"], d["classes"] = tuple(d["mean"]), tuple(d["std"]), tuple(d["classes"])
        return cls(**d)


_ARCHS: dict[str, tuple[ModelConfig, Callable[..., nn.Module]]] = {}


def register(cfg: ModelConfig):
    """Decorator: register a builder `fn(num_classes, in_chans, **arch_kwargs) -> nn.Module`."""
    def deco(fn):
        _ARCHS[cfg.name] = (cfg, fn)
        return fn
    return deco


@lru_cache(maxsize=1)
def bundled_models() -> dict[str, ModelConfig]:
    """The trained models shipped in vrfer/pretrained, by name (their configs, read from the files' metadata).
    The architectures register themselves when vrfer.models is imported (vrfer/models/__init__.py)."""
    out = {}
    for entry in sorted(resources.files("vrfer.pretrained").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".safetensors"):
            cfg = read_config(str(entry))
            out[cfg.name] = cfg
    return out


def list_models() -> list[ModelConfig]:
    bundled = bundled_models()
    return [c for c, _ in _ARCHS.values()] + list(bundled.values())


def get_config(name: str) -> ModelConfig:
    """The config of a registry name, bundled model, .safetensors file or run folder."""
    return resolve_model(name).cfg


class UnknownModelError(VrferError):
    """A model name that is no architecture, bundled model, model file or run folder."""


class ResolvedModel(NamedTuple):
    cfg: ModelConfig
    weights: Path | None     # the safetensors file to load; None: an architecture with fresh weights


def resolve_model(name) -> ResolvedModel:
    """A model name -> its config and weights file; the one place that reads model names.

    name: an architecture (fresh weights), a bundled trained model, a .safetensors file, or a training
    run folder (its best.safetensors). VrferError with one clear sentence for anything else."""
    name = str(name)
    bundled = bundled_models()
    if name in _ARCHS:
        return ResolvedModel(_ARCHS[name][0], None)
    if name in bundled:
        return ResolvedModel(bundled[name], pretrained_path(bundled[name].weights))
    if name == DEFAULT_MODEL:
        raise VrferError(f"the bundled model {name!r} is not installed with this copy of vrfer; "
                         "give a trained model with --model PATH.safetensors")
    path = Path(name)
    if path.is_dir():
        path = path / "best.safetensors"
        if not path.is_file():
            raise VrferError(f"{name}: a run folder without best.safetensors (training has not saved a model yet)")
    if path.suffix == ".safetensors" or os.sep in name:
        regular_file(path, "model file")   # a run folder: its best.safetensors
        return ResolvedModel(read_config(path), path)
    raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(list(_ARCHS) + list(bundled)))} "
                            "(or give a path to a .safetensors file or a training run folder)")


def resolve_trained(name, option: str = "", untrained_option: str = "") -> ResolvedModel:
    """resolve_model for uses that need trained weights: an unknown name or an architecture (random weights) is
    refused, offering the trained models as choices. option: the command-line option that named it (empty: the
    Python API); untrained_option: the command's option that accepts an architecture, if it has one."""
    name = str(name)
    where = f"{option} {name}" if option else repr(name)
    trained = ", ".join(sorted(bundled_models()))
    try:
        res = resolve_model(name)
    except UnknownModelError:
        raise VrferError(f"unknown model {name!r}; trained models: {trained} (or give a .safetensors file or a "
                         "training run folder; `vrfer models` lists the architectures)") from None
    if res.weights is None:
        remedy = (f", or {untrained_option}" if untrained_option else "") if option else \
            f", or ask for fresh weights: vrfer.create_model({name!r}, pretrained=False)"
        raise VrferError(f"{where}: an architecture with untrained (random) weights, not a trained model; give a "
                         f"trained model ({trained}), a .safetensors file or a run folder{remedy}")
    return res


def build(cfg: ModelConfig) -> nn.Module:
    if cfg.arch not in _ARCHS:
        raise VrferError(f"unknown architecture {cfg.arch!r}")
    model = _ARCHS[cfg.arch][1](num_classes=len(cfg.classes), in_chans=cfg.in_chans, **cfg.arch_kwargs)
    model.cfg = cfg
    return model


def create_model(name: str, pretrained: bool = True, backbone_weights=None, **overrides) -> nn.Module:
    """The PyTorch model of a registry name, bundled model, .safetensors file or run folder (after timm).

    pretrained=True: the trained weights; an architecture name (no trained weights) is refused with one line.
    pretrained=False: fresh (random) weights of the name's config. The same rule as vrfer.inference.loader.resolve (the front
    door for a model with its backend) and in the same words: resolve_trained.
    overrides replace config fields (e.g. input_mode="visible-half", image_size=96).
    backbone_weights: a public release of the backbone (vgg-face.mat, vgg_face_dag.pth, ...) whose conv weights
    are copied into fresh weights (see vrfer.models.importers.load_backbone_weights).
    """
    if backbone_weights is not None:
        model = create_model(name, pretrained=False, **overrides)
        load_backbone_weights(model, backbone_weights)
        return model
    if not pretrained:
        cfg = resolve_model(name).cfg
        return build(replace(cfg, **overrides) if overrides else cfg)
    return load_checkpoint(resolve_trained(name).weights, **overrides)


def pretrained_path(fname: str) -> Path:
    return Path(str(resources.files("vrfer.pretrained").joinpath(fname)))


def is_half(weights) -> bool:
    """Whether a .safetensors weights file stores its tensors as float16 (a head refitted into it keeps that)."""
    from safetensors import safe_open
    with safe_open(str(weights), "numpy") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype) == "float16"


def save_model(model: nn.Module, path, cfg: ModelConfig | None = None, half: bool = False) -> None:
    """Write weights + config as one safetensors file (loadable without unpickling).

    half=True stores floating-point tensors as float16 (half the size; loaded back into float32)."""
    from safetensors.torch import save_file
    cfg = cfg or model.cfg
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"vrfer_config": cfg.to_json()})
    tmp.replace(path)
    public_mode(path)  # safetensors writes 0600; a model file is meant to be shared


def read_config(path) -> ModelConfig:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise VrferError(f"{path}: not a readable safetensors model file ({e})") from None
    if "vrfer_config" not in meta:
        raise VrferError(f"{path}: safetensors file carries no vrfer model config")
    return ModelConfig.from_json(meta["vrfer_config"])


def load_checkpoint(path, **overrides) -> nn.Module:
    """The model in a file written by save_model, or the best weights of a training run folder (the file
    reader under vrfer.inference.loader.resolve; a user's model name goes through resolve)."""
    from safetensors.torch import load_file
    path = Path(path)
    if path.is_dir():
        path = resolve_model(str(path)).weights
    if not path.is_file():
        raise VrferError(f"{path}: model file not found")
    cfg = read_config(path)
    if overrides:
        cfg = replace(cfg, **overrides)
    model = build(cfg)
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise VrferError(f"{path}: weights do not fit architecture {cfg.arch!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if (cfg.extra or {}).get("adapted") and isinstance(getattr(model, "classifier", None), nn.Linear):
        check_head(model.classifier.weight.detach().numpy(), model.classifier.bias.detach().numpy(),
                   len(cfg.classes), str(path))
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
