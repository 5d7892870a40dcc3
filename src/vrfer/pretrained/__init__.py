"""Trained models shipped inside the package (safetensors; config in the file's metadata)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

DEFAULT_MODEL = "vrfer-lower"  # the bundled model every command and the API use unless told otherwise


@lru_cache(maxsize=1)
def bundled() -> dict:
    from ..models.registry import read_config
    out = {}
    folder = resources.files(__name__)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".safetensors"):
            cfg = read_config(str(entry))
            out[cfg.name] = cfg
    return out
