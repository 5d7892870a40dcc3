"""The one door for everything personal a user brings: calibration profiles (vrfer.calibration) and adapted
last layers (vrfer.adapt). Read once here and checked against the model that will use them, so that a bad one is
refused in one line (VrferError; serve answers `bad_param`) instead of failing every answer later.

What is checked (the same limits are mirrored in examples/onnx_client.py, which runs without vrfer):
- the file: a regular file (a pipe or device is refused at once, never read), at most MAX_PROFILE_BYTES, UTF-8
  (a BOM is accepted), JSON nested at most MAX_DEPTH deep;
- the fields: `format`, `version` (a whole number, not true/false), `classes` (strings, each once, each a class of
  the model), `weight` (one row of exactly the model's representation width per class), `bias`, `counts`;
  numbers are JSON numbers (not strings, not true/false), finite, and |x| <= MAX_ABS;
- the model: the profile names the weights it was made with (model_sha256).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from .errors import VrferError

MAX_PROFILE_BYTES = 4 * 2 ** 20   # a profile of 8 classes x 1280 numbers is ~200 KB as JSON
MAX_DEPTH = 20                    # a profile nests 3 deep ({"weight": [[...]]})
MAX_ABS = 1000.0                  # a trained last layer's numbers are within +-10; the refit stays near them


def _kind(mode: int) -> str:
    return ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a folder" if stat.S_ISDIR(mode) else "not a plain file")


def regular_file(path, what: str) -> os.stat_result:
    """The stat of a regular file; VrferError naming the path for a missing one ("{what} not found"), a folder,
    pipe or device (said as such: "/dev/null: model file not found" misled), or one that cannot be looked at."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise VrferError(f"{path}: {what} not found") from None
    except OSError as e:
        raise VrferError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        article = "an" if what[:1].lower() in "aeio" else "a"
        raise VrferError(f"{path}: not a regular file ({_kind(st.st_mode)}); {article} {what} is a file")
    return st


def read_regular(path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes; VrferError (naming the path) for anything else.
    A pipe or device is refused from its stat, never opened (opening a FIFO blocks until a writer comes)."""
    path = Path(path)
    st = regular_file(path, what)
    if st.st_size > max_bytes:
        raise VrferError(f"{path}: {st.st_size / 2 ** 20:.1f} MB; a {what} is at most {max_bytes // 2 ** 20} MB")
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | getattr(os, "O_NONBLOCK", 0))) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise VrferError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise VrferError(f"{path}: over {max_bytes // 2 ** 20} MB; a {what} is at most {max_bytes // 2 ** 20} MB")
    return data


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (checked before parsing: json recurses per level)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(data, where: str, what: str = "profile"):
    """JSON bytes or text -> the value; a UTF-8 BOM accepted; nesting over MAX_DEPTH, NaN/Infinity and bad
    UTF-8 refused in one line naming `where`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise VrferError(f"{where}: damaged {what} (not UTF-8 text: byte {e.start})") from None
    elif data.startswith("\ufeff"):
        data = data[1:]
    if _depth(data) > MAX_DEPTH:
        raise VrferError(f"{where}: damaged {what} (nested over {MAX_DEPTH} deep)")

    def no_constant(name):
        raise ValueError(f"{name}: numbers must be finite")

    def once(pairs):        # a key written twice by hand: json would keep the last one silently
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ValueError(f"key {twice[:40]!r} given twice")
        return dict(pairs)
    try:
        return json.loads(data, parse_constant=no_constant, object_pairs_hook=once)
    except RecursionError:      # unreachable after the depth check; kept as the last guard
        raise VrferError(f"{where}: damaged {what} (nested too deep)") from None
    except ValueError as e:
        raise VrferError(f"{where}: damaged {what} (not JSON: {e})") from None


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
    from .calibration import PROFILE_FORMAT, PROFILE_L2, PROFILE_VERSION
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
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise ValueError("`classes` must be a list of class names")
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
    weight = np.stack([numbers(r, f"weight[{i}]", width, " (the model's representation width)")
                       for i, r in enumerate(rows)])
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
    return names, {str(k): int(n) for k, n in counts.items()}, weight, bias, lam, blend


def check_profile(src, cfg=None, width: int | None = None, sha256: str | None = None, where: str | None = None):
    """A profile from a path, its JSON text/bytes, its JSON object (a dict: what serve's `profile` event carries)
    or a vrfer.calibration.Profile -> a checked Profile. cfg (the model's config: class names), width (the
    model's representation width) and sha256 (its model_fingerprint): what it must fit, each skipped when None.
    VrferError in one line naming `where` (default: the path, else "profile") for anything else."""
    from .calibration import Profile
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
            names, counts, weight, bias, lam, blend = profile_fields(src, None, None)
        except KeyError as e:
            raise VrferError(f"{where}: damaged profile (no {e.args[0]!r} field)") from None
        except (TypeError, ValueError) as e:
            raise VrferError(f"{where}: damaged profile ({e})") from None
        src = Profile(model=src["model"], model_sha256=src["model_sha256"], classes=names, counts=counts,
                      weight=weight, bias=bias, person=src.get("person", ""), lam=lam, blend=blend,
                      created=src.get("created", ""))
    elif not isinstance(src, Profile):
        raise VrferError(f"{where}: a profile is a vrfer.calibration.Profile, a profile file's path or its JSON "
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
        if width is not None and w.shape[1] != width:
            raise ValueError(f"`weight` rows have {w.shape[1]} numbers, {width} expected (the model's "
                             "representation width)")
        check_array(w, "weight")
        check_array(b, "bias")
    except ValueError as e:
        raise VrferError(f"{where}: damaged profile ({e})") from None
    return prof


def check_head(weight, bias, classes: int, where: str) -> None:
    """An adapted last layer (vrfer.adapt, stored in a model file): (classes, D) weights and (classes,) bias,
    finite and within +-MAX_ABS; VrferError naming `where` otherwise."""
    w, b = np.asarray(weight), np.asarray(bias)
    try:
        if w.ndim != 2 or w.shape[0] != classes or b.shape != (classes,):
            raise ValueError(f"last layer is {tuple(w.shape)} and {tuple(b.shape)}; expected {classes} rows")
        check_array(w, "classifier.weight")
        check_array(b, "classifier.bias")
    except ValueError as e:
        raise VrferError(f"{where}: damaged adapted model ({e})") from None
