"""Which weights is this? One answer everywhere: `model_fingerprint`.

sha256 over the model's state dict: each tensor by sorted name, with its dtype (floating point as float32), shape and
bytes. The same hex comes from a model in memory (`model_fingerprint`) and from its .safetensors file
(`weights_fingerprint`, without building the model; float16 files count as the float32 weights they load into), and
it ignores the file's metadata, so a model-card edit keeps it and new weights change it. Profiles name it
(`model_sha256`), exported ONNX files record it (metadata `vrfer_model_sha256`, also in the int8 graph, which is
used only when it matches the installed weights), and serve's GET /model reports its first 12 digits as `version`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from .errors import VrferError

MODEL_SHA256_KEY = "vrfer_model_sha256"   # where an exported ONNX file records the fingerprint of its weights


def _digest(tensors: Iterable[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, arr in sorted(tensors, key=lambda t: t[0]):
        arr = np.ascontiguousarray(arr.astype(np.float32) if np.issubdtype(arr.dtype, np.floating) else arr)
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def model_fingerprint(model) -> str:
    """The fingerprint of a PyTorch model's weights (its state dict)."""
    return _digest((name, t.detach().cpu().float().numpy() if t.is_floating_point() else t.detach().cpu().numpy())
                   for name, t in model.state_dict().items())


def weights_fingerprint(path) -> str:
    """The fingerprint of the weights in a .safetensors file written by vrfer.models.save_model: equal to
    model_fingerprint of the model loaded from it."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="numpy") as f:
            return _digest((k, f.get_tensor(k)) for k in f.keys())  # noqa: SIM118  (safe_open, not a dict)
    except Exception as e:  # noqa: BLE001  (any unreadable file: one message)
        raise VrferError(f"{path}: cannot read the weights ({e})") from None


__all__ = ["MODEL_SHA256_KEY", "model_fingerprint", "weights_fingerprint"]
