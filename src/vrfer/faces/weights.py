"""The face detectors' weights: ONNX graphs shipped in vrfer/pretrained (nothing is downloaded at run time),
each of which an environment variable may replace."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import VrferError


def pretrained_onnx(filename: str, env: str | None, what: str) -> bytes:
    """An ONNX graph shipped in vrfer/pretrained, or the file named by the environment variable `env` (if any)."""
    from importlib import resources
    override = os.environ.get(env) if env else None
    if override:
        try:
            return Path(override).read_bytes()
        except OSError as e:
            raise VrferError(f"{env}={override}: cannot read the file ({e.strerror})") from None
    entry = resources.files("vrfer.pretrained").joinpath(filename)
    if not entry.is_file():
        raise VrferError(f"{what} weights missing from the vrfer installation ({filename}); reinstall vrfer, "
                         "or use --face none (cropped faces) or --face x,y,w,h (a fixed region)")
    return entry.read_bytes()
