"""The one door for everything personal a user brings: calibration profiles (vrfer.personal.calibration) and adapted
last layers (vrfer.personal.adapt). Read once here and checked against the model that will use them, so that a bad one is
refused in one line (VrferError; serve answers `bad_param`) instead of failing every answer later.

What is checked (the same limits are mirrored in examples/onnx_client.py, which runs without vrfer):
- the file: a regular file (a pipe or device is refused at once, never read), at most MAX_PROFILE_BYTES, UTF-8
  (a BOM is accepted), JSON nested at most vrfer.files.MAX_DEPTH deep, no key twice (vrfer.files reads it);
- the fields: `format`, `version` (a whole number, not true/false), `classes` (strings, each once, each a class of
  the model), `weight` (one row of exactly the model's representation width per class), `bias`, `counts`;
  numbers are JSON numbers (not strings, not true/false), finite, and |x| <= MAX_ABS;
- the model: the profile names the weights it was made with (model_sha256).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import VrferError
from ..files import parse_json, read_regular
from .calibration import Profile, PROFILE_FORMAT, PROFILE_L2, PROFILE_VERSION

MAX_PROFILE_BYTES = 4 * 2 ** 20   # a profile of 8 classes x 1280 numbers is ~200 KB as JSON
MAX_ABS = 1000.0                  # a trained last layer's numbers are within +-10; the refit stays near them


def _number(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"`{name}` must hold numbers, not {type(v).__name__} ({str(v)[:20]!r})")
    if isinstance(v, int) and abs(v) > MAX_ABS:
        raise ValueError(f"`{name}` holds {v}: numbers must be within +-{MAX_ABS:g}")
    f = float(v)
    if not math.isfinite(f) or abs(f) > MAX_ABS:
        raise ValueError(f"`{name}` holds {f:g}: numbers must be finite and within +-{MAX_ABS:g}")
    return f


def numbers(values, name: str, n: int | None = None, why: str = "") -> np.ndarray:
    """A JSON list of numbers (exactly n when given, `why` says why) -> float32 array; ValueError naming `name`."""
    if not isinstance(values, list):
        raise TypeError(f"`{name}` must be a list of numbers, not {type(values).__name__}")
    if n is not None and len(values) != n:
        raise ValueError(f"`{name}` has {len(values)} numbers, {n} expected{why}")
    return np.array([_number(v, name) for v in values], np.float32)


def check_array(a: np.ndarray, name: str) -> None:
    """ValueError unless every number of `a` is finite and within +-MAX_ABS."""
    a = np.asarray(a)
    if a.size and not (np.all(np.isfinite(a)) and float(np.abs(a).max()) <= MAX_ABS):
        raise ValueError(f"`{name}` holds numbers that are not finite or not within +-{MAX_ABS:g}")


def profile_fields(d, classes, width: int | None):
    """A profile's JSON object -> (classes, counts, weight, bias, lam, blend), checked; ValueError or KeyError."""
    if not isinstance(d, dict) or d.get("format") != PROFILE_FORMAT:
        raise ValueError(f"not a vrfer profile (no \"format\": \"{PROFILE_FORMAT}\")")
    v = d.get("version")
    if isinstance(v, bool) or v != PROFILE_VERSION:
        raise ValueError(f"profile version {v!r}, this vrfer reads {PROFILE_VERSION}")
    for key in ("classes", "weight", "bias", "counts", "model", "model_sha256"):
        d[key]
    for key in ("model", "model_sha256", "person", "created"):
        if key in d and not isinstance(d[key], str):
            raise ValueError(f"`{key}` must be text, not {type(d[key]).__name__}")
    names = d["classes"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError("`classes` must be a list of class names")
    if not names and "reference" not in d:
        raise ValueError("`classes` is empty and there is no `reference`: the profile changes nothing")
    if len(set(names)) != len(names):
        raise ValueError("`classes` must name each enrolled class once")
    if classes is not None:
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise ValueError(f"names class {unknown[0][:40]!r}, which the model does not have")
    rows = d["weight"]
    if not isinstance(rows, list) or len(rows) != len(names):
        raise ValueError(f"`weight` must be {len(names)} rows (one per class in `classes`)")
    if width is None and rows and isinstance(rows[0], list):
        width = len(rows[0])
    if width is None and isinstance(d.get("reference"), list):
        width = len(d["reference"])
    weight = np.stack([numbers(r, f"weight[{i}]", width, " (the model's representation width)")
                       for i, r in enumerate(rows)]) if rows else np.zeros((0, width or 0), np.float32)
    bias = numbers(d["bias"], "bias", len(names), " (one per class, as `weight` has rows)")
    counts = d["counts"]
    if not isinstance(counts, dict):
        raise TypeError("`counts` must map each class to a number of faces")
    for k, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"`counts` of {k[:40]!r} must be a whole number of faces")
    lam, blend = d.get("lam", PROFILE_L2), d.get("blend", 1.0)
    lam = _number(lam, "lam")
    blend = _number(blend, "blend")
    if not 0.0 <= blend <= 1.0:
        raise ValueError("`blend` must be a number from 0 to 1")
    reference, ref_count = None, 0
    if "reference" in d:
        reference = numbers(d["reference"], "reference", width, " (the model's representation width)")
        ref_count = d.get("reference_count", 0)
        if isinstance(ref_count, bool) or not isinstance(ref_count, int) or ref_count < 0:
            raise ValueError("`reference_count` must be a whole number of faces")
    return names, {str(k): int(n) for k, n in counts.items()}, weight, bias, lam, blend, reference, ref_count


def check_profile(src, cfg=None, width: int | None = None, sha256: str | None = None, where: str | None = None):
    """A profile from a path, its JSON text/bytes, its JSON object (a dict: what serve's `profile` event carries)
    or a vrfer.personal.calibration.Profile -> a checked Profile. cfg (the model's config: class names), width (the
    model's representation width) and sha256 (its model_fingerprint): what it must fit, each skipped when None.
    VrferError in one line naming `where` (default: the path, else "profile") for anything else."""
    if isinstance(src, (str, os.PathLike)) and not (isinstance(src, str) and src.lstrip().startswith("{")):
        where = where or str(src)
        src = parse_json(read_regular(src, "profile", MAX_PROFILE_BYTES), where)
    elif isinstance(src, (str, bytes, bytearray)):
        where = where or "profile"
        if len(src) > MAX_PROFILE_BYTES:
            raise VrferError(f"{where}: over {MAX_PROFILE_BYTES // 2 ** 20} MB; a profile is at most that")
        src = parse_json(src, where)
    where = where or "profile"
    if isinstance(src, (dict, list)):
        try:
            names, counts, weight, bias, lam, blend, reference, ref_count = profile_fields(src, None, None)
        except KeyError as e:
            raise VrferError(f"{where}: damaged profile (no {e.args[0]!r} field)") from None
        except (TypeError, ValueError) as e:
            raise VrferError(f"{where}: damaged profile ({e})") from None
        src = Profile(model=src["model"], model_sha256=src["model_sha256"], classes=names, counts=counts,
                      weight=weight, bias=bias, person=src.get("person", ""), lam=lam, blend=blend,
                      created=src.get("created", ""), reference=reference, reference_count=ref_count)
    elif not isinstance(src, Profile):
        raise VrferError(f"{where}: a profile is a vrfer.personal.calibration.Profile, a profile file's path or its JSON "
                         f"object, not {type(src).__name__}")
    prof = src
    if sha256 is not None and cfg is not None:
        prof.check_model(cfg, sha256)        # made for these weights: said first, it explains any other misfit
    try:
        if cfg is not None:
            unknown = [c for c in prof.classes if c not in cfg.classes]
            if unknown:
                raise ValueError(f"names class {unknown[0][:40]!r}, which the model does not have")
        w, b = np.asarray(prof.weight), np.asarray(prof.bias)
        if w.ndim != 2 or w.shape[0] != len(prof.classes) or b.shape != (len(prof.classes),):
            raise ValueError(f"`weight` must be {len(prof.classes)} rows and `bias` {len(prof.classes)} numbers")
        if width is not None and len(prof.classes) and w.shape[1] != width:
            raise ValueError(f"`weight` rows have {w.shape[1]} numbers, {width} expected (the model's "
                             "representation width)")
        check_array(w, "weight")
        check_array(b, "bias")
        if prof.reference is not None:
            r = np.asarray(prof.reference)
            if r.ndim != 1 or (width is not None and len(r) != width):
                raise ValueError(f"`reference` has {r.size} numbers, {width} expected (the model's representation "
                                 "width)")
            check_array(r, "reference")
        elif not len(prof.classes):
            raise ValueError("`classes` is empty and there is no `reference`: the profile changes nothing")
    except ValueError as e:
        raise VrferError(f"{where}: damaged profile ({e})") from None
    return prof


def check_head(weight, bias, classes: int, where: str) -> None:
    """An adapted last layer (vrfer.personal.adapt, stored in a model file): (classes, D) weights and (classes,) bias,
    finite and within +-MAX_ABS; VrferError naming `where` otherwise."""
    w, b = np.asarray(weight), np.asarray(bias)
    try:
        if w.ndim != 2 or w.shape[0] != classes or b.shape != (classes,):
            raise ValueError(f"last layer is {tuple(w.shape)} and {tuple(b.shape)}; expected {classes} rows")
        check_array(w, "classifier.weight")
        check_array(b, "classifier.bias")
    except ValueError as e:
        raise VrferError(f"{where}: damaged adapted model ({e})") from None
