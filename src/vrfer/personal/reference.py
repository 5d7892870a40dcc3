"""The wearer's own face: read an expression as a change from that person's neutral face.

A generic model answers "neutral" for most sadness, anger, disgust and fear of a person it never saw: how a face
looks at rest differs more between people than a mild expression changes it. A **reference** r is the mean
representation (vrfer.inference.representation: the input of the model's last layer) of the wearer's relaxed face; the
**referenced head** reads the change f - r of a face's representation f from it:

    z_ref   = W_ref (f - r) + b_ref                                   (a linear layer, C x D)
    answer  = softmax((1 - w) * log_softmax(z_generic) + w * log_softmax(z_ref))

z_generic is the model's own logits (with a profile's rows, vrfer.personal.calibration, when one is in use), w the head's
`blend`, and then the model's usual post-processing (prior, classes). The generic half keeps the answer "neutral"
where the reference came from other light or glasses; the referenced half lifts the expressions the generic
model misses. Without a reference nothing changes: the answer is the generic one, bit for bit.

The head is fitted on people with neutral photos (`fit_head_on_people`: logistic regression on f - r, each
person's reference the mean of their OTHER neutral photos, pulled towards the generic last layer, as adaptation
pulls its head, vrfer.personal.adapt) and stored in the model's config (cfg.extra["reference_head"], JSON in the
.safetensors metadata and in exported ONNX files): the weights, and so the model's fingerprint, are unchanged.

Where a reference comes from:
- explicit: the mean of a neutral enrolment (`vrfer calibrate neutral=relaxed.mp4`), carried by the profile
  (vrfer.personal.calibration.Profile.reference), bound to the model's weights as profiles are;
- automatic (`RunningReference`): per stream, from the frames the plain answer calls confidently neutral; a
  VR wearer is mostly neutral. Until AUTO_WARMUP such frames are seen it gives nothing, so the answer during
  warm-up is exactly the generic one; then it follows slowly (AUTO_RATE per neutral frame), and a new stream (a
  lost face, `reset`) starts over.
A reference belongs to one person: it is applied to the wearer's face only (the first face, vrfer.faces.wearer_first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import VrferError
from .profile_check import check_array, MAX_ABS, numbers
from ..inference.representation import fit_head, head

REFERENCE_L2 = 0.01       # lam of the pull towards the generic last layer (leave-one-dataset-out, docs/RESULTS.md)
REFERENCE_BLEND = 0.7     # w: the referenced head's share of the answer's log-probabilities (same measurement)
REFERENCE_MIRROR = True   # the head also learns from each face mirrored, minus the mirrored reference
AUTO_NEUTRAL = 0.5        # a frame counts towards the automatic reference when the answer's P(neutral) >= this
AUTO_WARMUP = 30          # confidently neutral frames before the automatic reference is used (~1 s at 30 fps)
AUTO_RATE = 0.02          # after warm-up, each confidently neutral frame moves the reference by this share
NEUTRAL = "neutral"
HEAD_KEY = "reference_head"   # where a model's config keeps its referenced head


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass
class ReferencedHead:
    """The referenced head of one model (see the module docstring)."""
    weight: np.ndarray            # (C, D)
    bias: np.ndarray              # (C,)
    blend: float = REFERENCE_BLEND
    lam: float = REFERENCE_L2
    fitted_on: list = field(default_factory=list)   # [{"data": name, "people": n, "faces": n, "data_fingerprint": ..}]

    def __post_init__(self):
        self._w64 = np.asarray(self.weight, np.float64).T.copy()    # (D, C), once: each frame only multiplies
        self._b64 = np.asarray(self.bias, np.float64)

    def logits(self, logits: np.ndarray, features: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Model logits (N, C) and representations (N, D), and the reference: (D,) for faces of one person, or one
        row per face (N, D) where a NaN row means none (that face keeps the model's answer) -> the referenced
        answer's logits (N, C) (log-probabilities: softmax gives the answer), float64."""
        z = _log_softmax(logits)
        reference = np.asarray(reference, np.float64)
        f = np.asarray(features, np.float64)
        if reference.ndim == 1:             # one person: every row (no NaN check needed: refused at the door)
            z_ref = (f - reference) @ self._w64 + self._b64
            return (1.0 - self.blend) * z + self.blend * _log_softmax(z_ref)
        ok = np.isfinite(reference).all(axis=1)
        if ok.any():
            z_ref = (f[ok] - reference[ok]) @ self._w64 + self._b64
            z[ok] = (1.0 - self.blend) * z[ok] + self.blend * _log_softmax(z_ref)
        return z

    def to_json(self) -> dict:
        return {"formula": "softmax((1 - blend) * log_softmax(logits) + blend * log_softmax(weight @ "
                           "(representation - reference) + bias))",
                "blend": self.blend, "lam": self.lam, "fitted_on": self.fitted_on,
                "weight": [[float(v) for v in row] for row in self.weight],
                "bias": [float(v) for v in self.bias]}

    @classmethod
    def from_json(cls, d, classes: int, width: int | None = None, where: str = "model") -> "ReferencedHead":
        """The head from a model config's JSON, checked (shape against the model, finite, bounded)."""
        try:
            if not isinstance(d, dict):
                raise TypeError("must be a JSON object")
            rows = d["weight"]
            if not isinstance(rows, list) or len(rows) != classes:
                raise ValueError(f"`weight` must be {classes} rows (one per class)")
            width = width or (len(rows[0]) if isinstance(rows[0], list) else None)
            weight = np.stack([numbers(r, f"weight[{i}]", width, " (the model's representation width)")
                               for i, r in enumerate(rows)])
            bias = numbers(d["bias"], "bias", classes)
            blend = numbers([d.get("blend", REFERENCE_BLEND)], "blend")[0]
            if not 0.0 <= blend <= 1.0:
                raise ValueError("`blend` must be a number from 0 to 1")
            lam = float(numbers([d.get("lam", REFERENCE_L2)], "lam")[0])
        except KeyError as e:
            raise VrferError(f"{where}: damaged referenced head (no {e.args[0]!r} field)") from None
        except (TypeError, ValueError) as e:
            raise VrferError(f"{where}: damaged referenced head ({e}; numbers within +-{MAX_ABS:g})") from None
        return cls(weight, bias, float(blend), lam, list(d.get("fitted_on") or []))


def head_of(cfg, width: int | None = None) -> ReferencedHead | None:
    """The model's referenced head (from its config), or None when it has none."""
    d = (getattr(cfg, "extra", None) or {}).get(HEAD_KEY)
    if d is None:
        return None
    return ReferencedHead.from_json(d, len(cfg.classes), width, f"model {cfg.name!r}")


def default_mode(cfg) -> str:
    """The reference a stream uses when none is asked for: "auto" where the model has a referenced head (the
    simulated sessions of docs/RESULTS.md: never below the generic answer, within 3 points of an explicit neutral
    reference once settled), else "off". `vrfer predict`, `vrfer batch` and serve's connections take it."""
    return "auto" if HEAD_KEY in (getattr(cfg, "extra", None) or {}) else "off"


def with_head(cfg, head: ReferencedHead):
    """A copy of the config carrying `head` (the weights are untouched: the fingerprint stays)."""
    from dataclasses import replace
    return replace(cfg, extra={**(cfg.extra or {}), HEAD_KEY: head.to_json()})


# ------------------------------------------------------------------------------------------- references

def check_reference(vector, width: int, where: str = "reference") -> np.ndarray:
    """A reference (D,) as float32: the model's representation width, finite, bounded; VrferError otherwise."""
    try:
        r = np.asarray(vector, np.float32)
    except (TypeError, ValueError):
        raise VrferError(f"{where}: a reference is {width} numbers") from None
    if r.shape != (width,):
        raise VrferError(f"{where}: a reference is {width} numbers (the model's representation width), "
                         f"not shape {tuple(r.shape)}")
    try:
        check_array(r, "reference")
    except ValueError as e:
        raise VrferError(f"{where}: {e}") from None
    return r


def confident_neutral(probs: np.ndarray, classes, threshold: float = AUTO_NEUTRAL) -> np.ndarray:
    """Which rows of answers (N, C) say neutral with at least `threshold`: the faces an automatic reference uses."""
    probs = np.asarray(probs, np.float64).reshape(-1, len(classes))
    return probs[:, list(classes).index(NEUTRAL)] >= threshold


class RunningReference:
    """The automatic reference of one stream (a video's tracked face, a webcam, a serve connection): see the
    module docstring. `observe` takes each frame's wearer face, before its answer is given."""

    def __init__(self, classes, warmup: int = AUTO_WARMUP, rate: float = AUTO_RATE,
                 threshold: float = AUTO_NEUTRAL):
        self.classes, self.warmup, self.rate, self.threshold = tuple(classes), int(warmup), float(rate), threshold
        self.reset()

    def reset(self) -> None:
        """A new stream, or the face was lost: start over."""
        self.count = 0
        self._sum = None
        self.vector: np.ndarray | None = None

    def observe(self, feature: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        """One frame of the wearer: representation (D,) and the answer without a reference (C,) -> the
        reference to use for this frame (None during warm-up). The frame itself counts only from the next
        frame on, so a frame is never read against a reference that holds it."""
        current = self.vector
        if confident_neutral(probs, self.classes, self.threshold)[0]:
            f = np.asarray(feature, np.float64).reshape(-1)
            self.count += 1
            if self.vector is None:
                self._sum = f if self._sum is None else self._sum + f
                if self.count >= self.warmup:
                    self.vector = (self._sum / self.count).astype(np.float32)
                    self._sum = None
            else:
                self.vector = ((1 - self.rate) * self.vector + self.rate * f).astype(np.float32)
        return current

    @property
    def settled(self) -> bool:
        return self.vector is not None


def leave_one_out_references(features: np.ndarray, subjects: np.ndarray, use: np.ndarray,
                             sessions: np.ndarray | None = None) -> np.ndarray:
    """Each face's reference from the same person's OTHER faces among `use` (bool mask), never the face itself,
    and, where `sessions` are given, only from the person's other sessions (frames of one session are
    near-duplicates): (N, D), NaN rows where there is no such face. The honest reference of evaluation and fitting."""
    X = np.asarray(features, np.float64)
    out = np.full(X.shape, np.nan)
    subjects, use = np.asarray(subjects), np.asarray(use, bool)
    for person in np.unique(subjects):
        own = np.flatnonzero(subjects == person)
        if sessions is None:
            pool = own[use[own]]
            total = X[pool].sum(axis=0)
            for i in own:
                n = len(pool) - (1 if use[i] else 0)
                if n > 0:
                    out[i] = (total - (X[i] if use[i] else 0.0)) / n
            continue
        for i in own:
            pool = own[use[own] & (np.asarray(sessions)[own] != sessions[i])]
            if len(pool):
                out[i] = X[pool].mean(axis=0)
    return out


def person_references(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                      sessions: np.ndarray | None, kind: str, classes) -> np.ndarray:
    """The references `vrfer evaluate --reference KIND` reads each face against (leave_one_out_references):
    kind "neutral": the person's other neutral photos; "auto": their other photos the generic answer calls
    confidently neutral (confident_neutral; no labels), as the automatic reference picks frames."""
    if kind == "neutral":
        use = np.asarray(labels) == list(classes).index(NEUTRAL)
    elif kind == "auto":
        z = _log_softmax(logits)
        use = confident_neutral(np.exp(z), classes)
    else:
        raise VrferError(f"--reference {kind!r}: expected neutral or auto")
    return leave_one_out_references(features, subjects, use, sessions)


def fit_head_on_people(model, features: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                       mirrored: np.ndarray | None = None, lam: float = REFERENCE_L2,
                       blend: float = REFERENCE_BLEND, fitted_on: list | None = None) -> ReferencedHead:
    """The referenced head fitted on labelled faces of several people: representations (N, D), class indices,
    people; each face read against the mean of its person's OTHER neutral faces (a face whose person has no
    other neutral face is left out); mirrored: the representations of the mirrored faces, read against the
    mirrored reference (REFERENCE_MIRROR). Logistic regression pulled towards the model's own last layer
    (vrfer.inference.representation.fit_head); classes without a face keep the generic row."""
    labels = np.asarray(labels, np.int64)
    neutral = labels == list(model.cfg.classes).index(NEUTRAL)
    xs, ys = [], []
    for feats in [features] + ([mirrored] if mirrored is not None else []):
        x = np.asarray(feats, np.float64) - leave_one_out_references(feats, subjects, neutral)
        ok = np.isfinite(x).all(axis=1)
        xs.append(x[ok])
        ys.append(labels[ok])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) == 0 or len(np.unique(y)) < 2:
        raise VrferError("a referenced head needs faces of at least 2 classes of people with 2+ neutral faces "
                         "each (a face is read against the person's other neutral faces)")
    layer = head(model)
    w, b = fit_head(x, y, layer.weight.detach().numpy(), layer.bias.detach().numpy(), lam,
                    rows=sorted(set(y.tolist())), iters=500)
    return ReferencedHead(w, b, float(blend), float(lam), list(fitted_on or []))


__all__ = ["AUTO_NEUTRAL", "AUTO_RATE", "AUTO_WARMUP", "REFERENCE_BLEND", "REFERENCE_L2", "ReferencedHead",
           "RunningReference", "check_reference", "fit_head_on_people", "head_of",
           "leave_one_out_references", "person_references", "with_head"]
