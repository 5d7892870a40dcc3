"""Copy the conv weights of the paper's pretrained backbones from their public releases.

    >>> m = vrfer.create_model("vgg-face", backbone_weights="vgg-face.mat")       # or:
    >>> report = load_backbone_weights(vrfer.create_model("vgg-f", pretrained=False), "imagenet_matconvnet_vgg_f_dag.pth")

Formats, recognised by content (the file extension is only used in messages):

- MatConvNet "simplenn" .mat (vgg-face.mat, imagenet-vgg-f.mat; MATLAB v5/v7, read by scipy.io.loadmat):
  a cell array `layers` of structs with `name`, `type` ('conv' for conv *and* fully connected layers)
  and `weights` = {filters H x W x Cin x Cout, biases} (older files: fields `filters`, `biases`),
  optionally wrapped in a struct `net`. The mean pixel is `meta.normalization.averageImage` (older:
  `normalization.averageImage`), a 3-vector or a whole mean image (averaged per channel here).
- PyTorch state dicts (Albanie's "dag" conversions vgg_face_dag.pth, imagenet_matconvnet_vgg_f_dag.pth,
  or a vrfer/torchvision state dict), read with torch.load(weights_only=True): keys `conv1_1.weight`...
- safetensors files with the same keys.

Only the model's conv layers are filled: by name when the file has every one of them (conv1_1 ...
conv5_3, conv1 ... conv5; fc6-fc8 are ignored), else by order (the file's first conv layers). The new
classifier keeps its N(0, 0.1) init. MatConvNet filters H x W x Cin x Cout become PyTorch's
Cout x Cin x H x W (permute 3, 2, 0, 1). Nothing is copied unless every layer fits; a layer that does
not fit raises VrferError naming it with both shapes. Nothing is ever unpickled.

One exception: a state dict written for the very architecture, batch-norm statistics included (the
EfficientNet-Lite0 ImageNet weights, `backbone_weights="imagenet"`), is loaded whole but for the classifier.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import VrferError

FORMATS = ("matconvnet", "torch", "safetensors")


@dataclass
class ImportReport:
    path: str
    format: str                                   # one of FORMATS
    loaded: list = field(default_factory=list)    # (model layer, file layer, torch weight shape)
    ignored: list = field(default_factory=list)   # file conv layers left out (fc6, fc7, fc8 ...)
    by: str = "name"                              # "name", "order" or "full state"
    mean: tuple | None = None                     # mean pixel stored in the file (0-255), if any

    def __str__(self) -> str:
        s = (f"{Path(self.path).name} ({self.format}): {len(self.loaded)} conv layers by {self.by} "
             f"({', '.join(m for m, _, _ in self.loaded)})")
        if self.ignored:
            s += f"; ignored {', '.join(self.ignored)}"
        if self.mean is not None:
            s += f"; mean pixel {tuple(round(v, 2) for v in self.mean)}"
        return s


# ---------------------------------------------------------------- public API

def backbone_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's conv layers in forward order, named as in the weight releases where it can."""
    if hasattr(model, "backbone_convs"):
        return list(model.backbone_convs())
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def sniff_format(path) -> str:
    """'matconvnet', 'torch' or 'safetensors' from the file's first bytes; VrferError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise VrferError(f"{path}: backbone weight file not found")
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB"):
        if b"7.3" in head[:20] or b"HDF" in head:
            raise VrferError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; "
                             "re-save it with save(..., '-v7') in MATLAB/Octave")
        return "matconvnet"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"  # torch.save zip archive, or the legacy pickle-based format
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    raise VrferError(f"{path}: not a recognised weight file (expected a MatConvNet simplenn .mat such as "
                     "vgg-face.mat, a PyTorch state dict .pth such as vgg_face_dag.pth, or .safetensors)")


def read_weights(path) -> tuple[str, list[tuple[str, np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]],
                                 tuple | None]:
    """(format, [(layer name, weight, bias)] in file order, mean pixel or None).

    MatConvNet weights are returned as stored (H x W x Cin x Cout numpy), state-dict weights as tensors."""
    fmt = sniff_format(path)
    if fmt == "matconvnet":
        layers, mean = _read_simplenn(Path(path))
        return fmt, layers, mean
    return fmt, _conv_layers_of(_state_dict(Path(path), fmt)), None


def load_backbone_weights(model: nn.Module, path, *, update_mean: bool = True) -> ImportReport:
    """Copy a public release's conv weights into `model` (in place); the classifier stays as it is.

    path: a weight file (see the module doc), or "imagenet" for a model whose ImageNet weights come
    inside an installed package (efficientnet-lite0).
    update_mean: if the file stores a mean pixel (MatConvNet) that differs from model.cfg.mean, set
    model.cfg's mean to it. The file name is recorded in model.cfg.extra["backbone_weights"].
    Raises VrferError for a missing or unrecognised file and for any layer whose shape does not fit.
    """
    if str(path) == "imagenet":
        resolver = getattr(model, "imagenet_weights", None)
        if resolver is None:
            raise VrferError(f"{type(model).__name__}: no ImageNet weights come with a package; give a weight file")
        path = resolver()
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "matconvnet":
        layers, mean = _read_simplenn(path)
    else:
        state, mean = _state_dict(path, fmt), None
        report = _load_full_state(model, path, fmt, state)
        if report is not None:
            return report
        layers = _conv_layers_of(state)
        del state
    convs = backbone_convs(model)
    if not convs:
        raise VrferError(f"{type(model).__name__} has no conv layers to load weights into")
    file_names = [n for n, _, _ in layers]
    model_names = [n for n, _ in convs]
    by_name = _match_by_name(model_names, file_names)
    if by_name is not None:
        by, pairs = "name", [(n, m, layers[file_names.index(by_name[n])]) for n, m in convs]
    else:
        by = "order"
        if len(layers) < len(convs):
            raise VrferError(f"{path}: the file has {len(layers)} conv layers ({', '.join(file_names) or 'none'}), "
                             f"the model needs {len(convs)} ({', '.join(model_names)})")
        pairs = [(n, m, layers[i]) for i, (n, m) in enumerate(convs)]
    used = {p[2][0] for p in pairs}

    staged = []  # check every layer before copying any
    for mname, conv, (fname, w, b) in pairs:
        target = getattr(conv, "weight_orig", conv.weight)  # a DSD-pruned conv keeps its weight in weight_orig
        wt = _to_torch_weight(w, tuple(target.shape), fmt, path, fname, mname)
        bt = None
        if conv.bias is not None:
            if b is None:
                raise VrferError(f"{path}: layer {fname!r} has no bias; the model's {mname} needs "
                                 f"{tuple(conv.bias.shape)}")
            bt = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).reshape(-1)
            if bt.numel() != conv.bias.numel():
                raise VrferError(f"{path}: layer {fname!r}: bias has {bt.numel()} values "
                                 f"(shape {tuple(np.shape(b))}), the model's {mname} needs {tuple(conv.bias.shape)}")
        staged.append((mname, fname, conv, target, wt, bt))
    with torch.no_grad():
        for mname, fname, conv, target, wt, bt in staged:
            target.copy_(wt)
            if bt is not None:
                conv.bias.copy_(bt)

    report = ImportReport(str(path), fmt, [(m, f, tuple(t.shape)) for m, f, _, t, _, _ in staged],
                          [n for n in file_names if n not in used], by, mean)
    _record(model, path, mean if update_mean else None)
    return report


def _record(model: nn.Module, path: Path, mean) -> None:
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return
    upd = {"extra": {**cfg.extra, "backbone_weights": path.name}}
    if mean is not None and len(mean) == len(cfg.mean) and max(abs(a - b) for a, b in zip(mean, cfg.mean)) > 1e-3:
        upd["mean"] = tuple(mean)
    model.cfg = replace(cfg, **upd)


def _match_by_name(model_names: list[str], file_names: list[str]) -> dict | None:
    """{model layer: file layer} when every model layer has exactly one file layer of that name
    (equal, or ending in '.<name>' as in a state dict of a whole vrfer model), else None."""
    out = {}
    for n in model_names:
        hits = [f for f in file_names if f == n] or [f for f in file_names if f.endswith("." + n)]
        if len(hits) != 1:
            return None
        out[n] = hits[0]
    return out


def _load_full_state(model: nn.Module, path: Path, fmt: str, state: dict) -> ImportReport | None:
    """A state dict written for this very architecture (e.g. EfficientNet's, with batch-norm statistics):
    load every tensor but the classifier's. None when the keys or shapes do not all match."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    if not own or not all(k in state and tuple(state[k].shape) == tuple(v.shape) for k, v in own.items()):
        return None
    if not any(k.endswith(("running_mean", "running_var")) for k in own):
        return None  # no normalisation statistics: the conv-layer path says more on a mismatch
    model.load_state_dict({k: state[k] for k in own}, strict=False)
    convs = [(n, n, tuple(m.weight.shape)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    report = ImportReport(str(path), fmt, convs, sorted(k for k in state if k not in own), "full state", None)
    _record(model, path, None)
    return report


# ---------------------------------------------------------------- conversion

def _to_torch_weight(w, shape: tuple, fmt: str, path: Path, fname: str, mname: str) -> torch.Tensor:
    cout, cin, kh, kw = shape
    if fmt == "matconvnet":
        a = np.asarray(w)
        want = (kh, kw, cin, cout)
        if a.ndim < 4 and a.shape + (1,) * (4 - a.ndim) == want:
            a = a.reshape(want)  # MATLAB drops trailing singleton dimensions (e.g. Cout = 1)
        if a.shape != want:
            raise VrferError(f"{path}: layer {fname!r} -> model layer {mname}: filters are "
                             f"{'x'.join(map(str, a.shape))} (H x W x Cin x Cout) in the file, the model needs "
                             f"{'x'.join(map(str, want))} (PyTorch weight {tuple(shape)})")
        return torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1)))
    t = w if isinstance(w, torch.Tensor) else torch.as_tensor(np.asarray(w))
    if tuple(t.shape) != shape:
        raise VrferError(f"{path}: layer {fname!r} -> model layer {mname}: weight is {tuple(t.shape)} in the file, "
                         f"the model needs {shape} (Cout x Cin x H x W)")
    return t


# ---------------------------------------------------------------- MatConvNet simplenn

def _field(s, name: str):
    """Field `name` of a loadmat struct (a structured array of size 1), or None."""
    if isinstance(s, dict):
        return s.get(name)
    if isinstance(s, np.ndarray) and s.dtype.names and name in s.dtype.names and s.size:
        return s[name].flat[0]
    return None


def _str(x) -> str:
    while isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        if x.dtype.kind == "U":
            return "".join(x.ravel(order="F").tolist())
        x = x.flat[0]
    return str(x)


def _cells(x) -> list:
    if isinstance(x, np.ndarray) and x.dtype == object:
        return list(x.ravel(order="F"))
    if isinstance(x, np.ndarray) and x.dtype.names:  # a struct array (e.g. 1xL struct) instead of a cell array
        return [x.reshape(-1, order="F")[i:i + 1] for i in range(x.size)]
    return [x]


def _read_simplenn(path: Path):
    import scipy.io
    try:
        d = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise VrferError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; "
                         "re-save it with save(..., '-v7')") from None
    except Exception as e:  # noqa: BLE001  scipy raises many types for a damaged file
        raise VrferError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    root = d
    if "layers" not in d and "net" in d:
        root = d["net"]
    layers = _field(root, "layers")
    if layers is None:
        names = [k for k in d if not k.startswith("__")]
        raise VrferError(f"{path}: no MatConvNet simplenn 'layers' in this .mat (variables: {', '.join(names) or 'none'})")
    out = []
    for i, layer in enumerate(_cells(layers)):
        if isinstance(layer, np.ndarray) and layer.dtype == object and layer.size == 1:
            layer = layer.flat[0]
        ltype = _str(_field(layer, "type"))
        if ltype.startswith("dagnn."):
            raise VrferError(f"{path}: a MatConvNet DagNN .mat is not supported; use the simplenn release "
                             "(vgg-face.mat, imagenet-vgg-f.mat) or the PyTorch *_dag.pth conversion")
        if ltype != "conv":
            continue
        name = _str(_field(layer, "name")) or f"layer{i + 1}"
        weights = _field(layer, "weights")
        if weights is not None:
            cells = _cells(weights)
            if len(cells) < 1:
                raise VrferError(f"{path}: conv layer {name!r} has an empty 'weights' cell")
            f, b = cells[0], cells[1] if len(cells) > 1 else None
        else:
            f, b = _field(layer, "filters"), _field(layer, "biases")
            if f is None:
                raise VrferError(f"{path}: conv layer {name!r} has neither 'weights' nor 'filters'")
        if b is not None and np.asarray(b).size == 0:
            b = None
        out.append((name, np.asarray(f), None if b is None else np.asarray(b)))
    meta = _field(root, "meta")
    norm = _field(meta, "normalization") if meta is not None else _field(root, "normalization")
    return out, _mean_pixel(_field(norm, "averageImage") if norm is not None else None)


def _mean_pixel(avg) -> tuple | None:
    if avg is None:
        return None
    a = np.asarray(avg, dtype=np.float64)
    if a.size == 0:
        return None
    if a.ndim == 3 and a.shape[-1] in (1, 3) and a.shape[0] * a.shape[1] > 1:
        return tuple(float(v) for v in a.mean(axis=(0, 1)))  # a whole mean image, H x W x C
    return tuple(float(v) for v in a.reshape(-1))


# ---------------------------------------------------------------- PyTorch / safetensors state dicts

def _conv_layers_of(state: dict) -> list:
    """[(layer, weight, bias)] for the 4-D weights of a state dict, in its order (= the network's order
    for a torch.save'd state dict); the layer is the key without '.weight'."""
    out = []
    for k, v in state.items():
        if not (isinstance(v, torch.Tensor) and v.ndim == 4 and k.endswith("weight")):
            continue
        base = k[: -len("weight")].rstrip("._")
        out.append((base or k, v, state.get(base + ".bias") if base else None))
    return out


def _state_dict(path: Path, fmt: str) -> dict:
    if fmt == "safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise VrferError(f"{path}: not a readable safetensors file ({e})") from None
    else:
        try:
            import warnings
            with warnings.catch_warnings():   # torch warns about legacy files before refusing them: one line is enough
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            first = (str(e).splitlines() or [""])[0]
            raise VrferError(f"{path}: holds more than tensors, and vrfer never unpickles arbitrary objects "
                             f"(torch.load weights_only=True refused: {first[:120]}); "
                             "save a plain state dict (model.state_dict()) instead") from None
        except Exception as e:  # noqa: BLE001
            raise VrferError(f"{path}: not a readable PyTorch weight file ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise VrferError(f"{path}: holds no state dict of tensors")
    return state
