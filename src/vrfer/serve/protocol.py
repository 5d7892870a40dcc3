"""The `vrfer serve` wire protocol: message shapes, per-connection parameters and the change debouncer
(smoothing is vrfer.inference.smoothing's, the prior and class subset vrfer.inference.pipeline's, as everywhere in vrfer).

Pure logic, no I/O: the server (vrfer.serve.app) and the tests both use it. docs/PROTOCOL.md
describes the same messages for client authors.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..classes import CLASSES, class_name
from ..errors import VrferError
from ..results import DECIMALS, FacePrediction
from ..inference.smoothing import check_alpha

PROTOCOL_VERSION = 1

# defaults of the per-connection parameters (CLI flags change the server's defaults, query parameters
# and "config" messages change one connection's)
DEFAULT_ALPHA = 0.4          # EMA weight of the newest frame: 1 = no smoothing
DEFAULT_THRESHOLD = 0.5      # smoothed probability the new label needs to count as a change
DEFAULT_MIN_FRAMES = 3       # ... for at least this many consecutive frames
DEFAULT_MIN_SECONDS = 0.0    # ... and for at least this long
DEFAULT_MAX_FRAME_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096

# client -> server text messages
CLIENT_TYPES = ("config", "frame", "subscribe", "unsubscribe", "reset", "ping", "stats", "calibrate", "reference")
REFERENCE_ACTIONS = ("get", "set", "clear", "auto")   # the wearer's neutral reference (vrfer.personal.reference)
CALIBRATE_ACTIONS = ("start", "stop", "finish", "load", "clear")
CAPTURE_FRAMES = 30          # frames a "calibrate start" captures unless told ("frames")
MAX_CAPTURE_FRAMES = 1000


class ProtocolError(ValueError):
    """Anything a client sent that the server cannot use (a bad message, parameter or frame): an "error"
    event on that connection, or an HTTP error, with a code and a message; never a crash."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------ parameters

@dataclass(frozen=True)
class Params:
    """One connection's settings. Settable by query parameters (?alpha=0.3&crop=1) or a config message."""

    alpha: float = DEFAULT_ALPHA
    threshold: float = DEFAULT_THRESHOLD
    min_frames: int = DEFAULT_MIN_FRAMES
    min_seconds: float = DEFAULT_MIN_SECONDS
    crop: bool = False           # add a PNG of the face rows the model sees ("crop", a data URL)
    arrays: bool = False         # probs/smoothed as lists in class order (Unity's JsonUtility) instead of dicts
    track: bool = True           # with --face detect: follow the main face between frames (one face, cheap)
    prior: object = None         # train | uniform | class frequencies (vrfer.inference.postprocess.PostProcess);
                                 # None: the model's own default (cfg.extra["default_post"])
    prior_tau: float | None = None  # strength of the prior shift (None: the model's default, else 1)
    classes: tuple = ()          # answer only among these classes (empty: all)

    def to_dict(self) -> dict:
        return asdict(self)

    def updated(self, values: dict, strict: bool = False, also: tuple = ()) -> "Params":
        """A copy with `values` (strings from a query or JSON values) applied; raises ProtocolError.
        strict: an unknown key is an error (a config message holds settings only; a query also holds the
        token and such: `also`, the other names it may hold, are left alone; a misspelt setting was ignored)."""
        known = {f.name for f in fields(self)}
        changes = {}
        for key, raw in values.items():
            if key in also:
                continue
            if key not in known:
                if strict:
                    raise ProtocolError("bad_param", f"unknown setting {str(key)[:40]!r}; settings: "
                                                     f"{', '.join(sorted(known))}")
                continue
            changes[key] = _convert(key, raw)
        return replace(self, **changes)


def _convert(key: str, raw):
    try:
        if key == "prior":       # names and numbers only: a client never names a file on the server
            if isinstance(raw, str) and raw.strip() in ("train", "uniform"):
                return raw.strip()
            values = raw.split(",") if isinstance(raw, str) else raw
            if isinstance(values, dict):
                return {str(k): float(v) for k, v in values.items()}
            if not isinstance(values, (list, tuple)) or len(values) < 2:
                raise ValueError
            return tuple(float(v) for v in values)
        if key == "classes":
            names = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
                raise ValueError
            return tuple(c if c in CLASSES else class_name(c) for c in (c.strip() for c in names) if c)
        if key in ("crop", "arrays", "track"):
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, (int, float)) and raw in (0, 1):
                return bool(raw)
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if key == "min_frames":
            if isinstance(raw, bool):
                raise ValueError
            v = float(raw)
            if not v.is_integer() or not 1 <= v <= 10_000:
                raise ValueError
            return int(v)
        if isinstance(raw, bool):
            raise ValueError
        v = float(raw)
        if not math.isfinite(v):
            raise ValueError
        if key == "alpha":
            check_alpha(v)      # the range of ALPHA, as everywhere (vrfer.inference.smoothing)
        if key == "threshold" and not 0.0 <= v <= 1.0:
            raise ValueError
        if key == "min_seconds" and not 0.0 <= v <= 3600.0:
            raise ValueError
        if key == "prior_tau" and v < 0:
            raise ValueError
        return v
    except (TypeError, ValueError, VrferError):
        ranges = {"alpha": "a number in (0, 1]", "threshold": "a number in [0, 1]",
                  "min_frames": "an integer in [1, 10000]", "min_seconds": "seconds in [0, 3600]",
                  "crop": "true/false or 1/0", "arrays": "true/false or 1/0",
                  "track": "true/false or 1/0", "prior": "train, uniform or one frequency per class (a,b,...)",
                  "prior_tau": "a number >= 0", "classes": "class names separated by commas"}
        raise ProtocolError("bad_param", f"{key}={raw!r}: expected {ranges[key]}") from None


# ------------------------------------------------------------------------------------------ changes

@dataclass
class Change:
    old: str | None
    new: str
    confidence: float
    frames: int
    seconds: float


class Debouncer:
    """Emits a change when a new label leads the smoothed probabilities, with smoothed probability
    >= threshold, for >= min_frames consecutive frames AND >= min_seconds.

    The very first stable label is a change too (from None). Frames without a face do not count for
    or against a candidate.
    """

    def __init__(self, classes=CLASSES, threshold: float = DEFAULT_THRESHOLD,
                 min_frames: int = DEFAULT_MIN_FRAMES, min_seconds: float = DEFAULT_MIN_SECONDS):
        self.classes = tuple(classes)
        self.threshold = threshold
        self.min_frames = min_frames
        self.min_seconds = min_seconds
        self.current: str | None = None
        self._candidate: str | None = None
        self._count = 0
        self._since = 0.0

    def reset(self) -> None:
        self.current, self._candidate, self._count = None, None, 0

    def update(self, smoothed, now: float | None = None) -> Change | None:
        now = time.monotonic() if now is None else now
        smoothed = np.asarray(smoothed)
        k = int(np.argmax(smoothed))
        label, p = self.classes[k], float(smoothed[k])
        if label == self.current or p < self.threshold:
            self._candidate, self._count = None, 0
            return None
        if label != self._candidate:
            self._candidate, self._count, self._since = label, 0, now
        self._count += 1
        if self._count >= self.min_frames and now - self._since >= self.min_seconds:
            change = Change(self.current, label, p, self._count, now - self._since)
            self.current, self._candidate, self._count = label, None, 0
            return change
        return None


# ------------------------------------------------------------------------------------------ messages

def prediction_event(frame, faces: list[FacePrediction], latency_ms: float | None = None,
                     dropped: int | None = None, source: str | None = None, crop: str | None = None,
                     stable: str | None = None, arrays: bool = False) -> dict:
    """The faces of one frame (vrfer.results.FacePrediction, largest first) -> the "prediction" event
    (JSON-ready): each face as FacePrediction.to_dict writes it, without source and frame (the event's own).
    arrays: probabilities as lists in class order instead of {class: p} objects."""
    main = faces[0] if faces else None
    ev = {"type": "prediction", "time": round(time.time(), 4), "frame": frame,
          "faces": [f.to_dict(arrays=arrays, where=False) for f in faces],
          "label": None if main is None else main.smoothed_label or main.label, "stable": stable}
    if latency_ms is not None:
        ev["latency_ms"] = round(latency_ms, 2)
    if dropped is not None:
        ev["dropped"] = dropped
    if source is not None:
        ev["source"] = source
    if crop is not None:
        ev["crop"] = crop
    return ev


def change_event(frame, change: Change, face: int = 0, source: str | None = None) -> dict:
    ev = {"type": "change", "time": round(time.time(), 4), "frame": frame, "face": face,
          "from": change.old, "to": change.new, "confidence": round(change.confidence, DECIMALS),
          "frames": change.frames, "seconds": round(change.seconds, 3)}
    if source is not None:
        ev["source"] = source
    return ev


def error_event(code: str, message: str, frame=None) -> dict:
    ev = {"type": "error", "time": round(time.time(), 4), "code": code, "message": message}
    if frame is not None:
        ev["frame"] = frame
    return ev


def error_body(code: str, message: str) -> dict:
    """An HTTP error response's JSON body (an error_event without time or frame)."""
    return {"type": "error", "code": code, "message": message}


def hello_event(session: int, model: str, classes, config: dict, max_frame_bytes: int, source: str | None) -> dict:
    """The first event of every connection."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "session": session, "model": model,
            "classes": list(classes), "config": config, "max_frame_bytes": max_frame_bytes, "source": source}


def config_event(config: dict) -> dict:
    return {"type": "config", "config": config}


def subscribed_event(source: str) -> dict:
    return {"type": "subscribed", "source": source}


def unsubscribed_event() -> dict:
    return {"type": "unsubscribed"}


def reset_event() -> dict:
    return {"type": "reset"}


def pong_event(client_id) -> dict:
    return {"type": "pong", "time": round(time.time(), 4), "id": client_id}


def stats_event(row: dict) -> dict:
    return {"type": "stats", **row}


def reference_event(mode: str, vector, frames: int | None) -> dict:
    """The wearer's reference in use: mode "fixed", "auto" or "off"; vector None while none (or warming up);
    frames: the neutral-looking frames an automatic one has seen."""
    return {"type": "reference", "mode": mode, "settled": vector is not None, "frames": frames,
            "reference": None if vector is None else [round(float(v), 6) for v in vector]}


def calibration_event(action: str, label: str | None = None, frames: int | None = None,
                      counts: dict | None = None) -> dict:
    """A calibration step: start (label, frames), captured (label, counts), stop (counts) or clear."""
    ev = {"type": "calibration", "action": action}
    for key, value in (("label", label), ("frames", frames), ("counts", counts)):
        if value is not None:
            ev[key] = value
    return ev


def profile_event(profile: dict) -> dict:
    """The profile a connection answers with from now on (the profile file's JSON)."""
    return {"type": "profile", "profile": profile}


def source_ended_event(source: str) -> dict:
    return {"type": "source_ended", "source": source, "time": round(time.time(), 4)}


def parse_client_message(text: str) -> dict:
    """A text message -> a dict with a known "type"; raises ProtocolError for anything else."""
    if len(text) > 16 * 1024 * 1024:
        raise ProtocolError("bad_message", "text message too long")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "text messages must be JSON objects, e.g. {\"type\": \"ping\"}") \
            from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "text messages must be JSON objects with a \"type\"")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "message has no \"type\" string")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}; "
                                            f"known: {', '.join(CLIENT_TYPES)}")
    return msg
