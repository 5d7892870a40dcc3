"""Calibrating a model to one person: a profile made from a few labelled faces of that person.

The wearer makes each expression for a moment (K = 1 face to a few hundred video frames per expression,
any subset of the classes). The profile is the model's last layer refitted on those faces, pulled towards
the running model's own layer (vrfer.inference.representation.fit_head, L2-SP, lam PROFILE_L2), with only the rows of the
enrolled classes free: a class the person did not show keeps the model's answer exactly. Chosen by
measurement against prototypes (nearest class mean, blended or not with the model's answer) on
taiwanese-dev across sessions (docs/RESULTS.md, "Adaptation and calibration").

On a model whose last layer was adapted to a setup's labelled faces (vrfer.personal.adapt), the refitted rows are blended
half-way back to the model's own (`blend`, ADAPTED_BLEND): the adapted layer already knows the setup, and across
sessions on taiwanese-dev a full refit on one session's faces loses on top of it where the half-way blend gains
(docs/RESULTS.md, "Adaptation and calibration"). The blend is a weighted mean of two linear layers, so it is stored
as the profile's rows: applying a profile does not depend on it.

A calibrated answer: logits z = model logits, then for each enrolled class c
    z_c = dot(representation, weight_c) + bias_c
and the model's usual post-processing (prior, class subset) on z. The representation is the input of the
model's last layer (vrfer.inference.representation).

The profile file is JSON (never pickle), documented field by field in `Profile.to_json`, and names the
model it belongs to: its name and the sha256 of its weights (vrfer.fingerprint.model_fingerprint; an ONNX
file from `vrfer export` records it as vrfer_model_sha256). Reading one is vrfer.personal.profile_check.check_profile: a
profile for another model, or damaged, is refused.

A profile is applied through whichever backend answers: PyTorch, or an ONNX graph with the `representation`
output (vrfer.inference.onnx_backend; the shipped int8 graph has it). examples/onnx_client.py repeats `Profile.apply`
without vrfer, and the exported model card shows it in C#.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VrferError
from ..fingerprint import model_fingerprint
from ..inference.representation import fit_head, head
from ..inference.postprocess import softmax

PROFILE_FORMAT = "vrfer-profile"
PROFILE_VERSION = 1
PROFILE_L2 = 0.1        # lam of the pull towards the model's own layer (taiwanese-dev, across sessions)
ADAPTED_BLEND = 0.5     # share of the refitted rows on an adapted model (the rest: its own rows); 1.0 otherwise
# what `Profile.apply` computes, in words: written into each profile and into exported ONNX files' metadata
PROFILE_FORMULA = ("logit_c = dot(representation, weight_c) + bias_c for each enrolled class c; other classes keep "
                   "the model's logit; then the model's usual post-processing (prior, classes)")


@dataclass
class Profile:
    """One person's calibration for one model (see the module docstring)."""
    model: str                     # the model's name (cfg.name)
    model_sha256: str              # model_fingerprint of the weights it was made with
    classes: list[str]             # the enrolled classes, in the model's class order
    counts: dict[str, int]         # faces per enrolled class
    weight: np.ndarray             # (len(classes), D) rows of the calibrated last layer
    bias: np.ndarray               # (len(classes),)
    person: str = ""
    lam: float = PROFILE_L2
    blend: float = 1.0             # the share of the refit in the rows (ADAPTED_BLEND on adapted models)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    reference: np.ndarray | None = None   # (D,) the mean representation of the person's neutral faces (vrfer.personal.reference)
    reference_count: int = 0              # how many faces it is the mean of

    def rows(self, all_classes) -> list[int]:
        return [list(all_classes).index(c) for c in self.classes]

    def apply(self, logits: np.ndarray, features: np.ndarray, all_classes) -> np.ndarray:
        """Model logits (N, C) and representations (N, D) -> calibrated logits (N, C), float64."""
        z = np.array(logits, np.float64, copy=True)
        if len(z) and len(self.classes):
            z[:, self.rows(all_classes)] = (np.asarray(features, np.float64) @ self.weight.astype(np.float64).T
                                            + self.bias.astype(np.float64))
        return z

    def probabilities(self, logits: np.ndarray, features: np.ndarray, all_classes) -> np.ndarray:
        """The calibrated answers (N, C), float64: softmax of `apply`."""
        return softmax(self.apply(logits, features, all_classes))

    def check_model(self, cfg, sha256: str) -> None:
        """VrferError unless this profile was made for exactly this model."""
        if self.model_sha256 != sha256:
            raise VrferError(f"profile made for model {self.model!r} (weights {self.model_sha256[:12]}), not for "
                             f"{cfg.name!r} (weights {sha256[:12]}): calibrate again with this model")
        unknown = [c for c in self.classes if c not in cfg.classes]
        if unknown:
            raise VrferError(f"profile names class {unknown[0]!r}, which model {cfg.name!r} does not have")

    def to_json(self) -> dict:
        ref = {} if self.reference is None else {
            "reference": [float(v) for v in self.reference],   # D numbers: the mean representation of neutral faces
            "reference_count": int(self.reference_count)}
        return {
            "format": PROFILE_FORMAT,          # always "vrfer-profile"
            "version": PROFILE_VERSION,
            "model": self.model,               # the model's name
            "model_sha256": self.model_sha256,  # sha256 of the model's weights (vrfer.fingerprint.model_fingerprint)
            "person": self.person,             # free text, may be empty
            "created": self.created,
            "method": "last-layer rows refitted with an L2 pull towards the model's own (vrfer.inference.representation.fit_head), blended with the model's own rows by `blend`",
            "lam": self.lam,
            "blend": self.blend,               # rows = blend * refitted + (1 - blend) * the model's own
            "classes": list(self.classes),     # enrolled classes; the others keep the model's logits
            "counts": {c: int(self.counts[c]) for c in self.classes},
            "weight": [[float(v) for v in row] for row in self.weight],   # one row of D numbers per class
            "bias": [float(v) for v in self.bias],
            "formula": PROFILE_FORMULA,
            **ref,
        }

    def save(self, path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
            tmp.replace(path)
        except OSError as e:
            raise VrferError(f"{path}: cannot write the profile ({e.strerror or e})") from None
        return path


def default_blend(cfg) -> float:
    """ADAPTED_BLEND for a model whose last layer was refitted on a setup's labelled faces (its config records
    how many), else 1.0 (the refit alone; an AdaBN-only adaptation keeps the generic layer)."""
    adapted = (cfg.extra or {}).get("adapted") or {}
    return ADAPTED_BLEND if int(adapted.get("faces", 0) or 0) > 0 else 1.0


def enrol(model, features: np.ndarray, labels, person: str = "", lam: float = PROFILE_L2,
          model_sha256: str | None = None, blend: float | None = None) -> Profile:
    """A profile from the representations (N, D) of a person's faces and their labels (class indices or
    names). Every class with at least one face is enrolled; the others keep the model's answer. Neutral faces
    also make the profile's reference (vrfer.personal.reference: their mean representation); faces of neutral alone
    make a reference only (a refit on one class would only push every answer towards it).
    model_sha256: model_fingerprint(model) where the caller has it already (a Pipeline keeps it).
    blend: the refit's share in the rows (None: default_blend, by whether the model is adapted)."""
    cfg = model.cfg
    labels = np.asarray([cfg.classes.index(v) if isinstance(v, str) else int(v) for v in labels], np.int64)
    if len(labels) == 0:
        raise VrferError("calibration needs at least one labelled face")
    if len(labels) != len(features):
        raise VrferError("one label per face is needed")
    blend = default_blend(cfg) if blend is None else float(blend)
    if not 0.0 <= blend <= 1.0:
        raise VrferError(f"blend {blend}: expected a number from 0 to 1")
    features = np.asarray(features, np.float32)
    neutral = labels == list(cfg.classes).index("neutral") if "neutral" in cfg.classes else np.zeros(len(labels), bool)
    reference = features[neutral].astype(np.float64).mean(axis=0).astype(np.float32) if neutral.any() else None
    layer = head(model)
    w0, b0 = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    rows = sorted(set(labels.tolist())) if not neutral.all() else []
    if rows:
        w, b = fit_head(features, labels, w0, b0, lam, rows=rows)
        w, b = blend * w + (1 - blend) * w0, blend * b + (1 - blend) * b0
    else:
        w, b = w0, b0
    names = [cfg.classes[r] for r in rows]
    counts = {cfg.classes[r]: int((labels == r).sum()) for r in rows}
    return Profile(model=cfg.name, model_sha256=model_sha256 or model_fingerprint(model), classes=names, counts=counts,
                   weight=np.asarray(w)[rows].astype(np.float32),
                   bias=np.asarray(b)[rows].astype(np.float32), person=person, lam=lam, blend=blend,
                   reference=reference, reference_count=int(neutral.sum()))
