"""Step 5 of the pipeline (vrfer.inference.pipeline): what is done to a model's class scores before they are reported,
a class prior (logit adjustment) and a class subset, read once from the model's config and the user's options."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..classes import class_name, CLASSES
from ..errors import VrferError
from ..files import parse_json, read_regular

PRIOR_NAMES = ("train", "uniform")


def train_prior(cfg) -> np.ndarray | None:
    """The model's training class prior (cfg.extra["train_prior"], 8 values in class order), or None."""
    p = (cfg.extra or {}).get("train_prior")
    if p is None:
        return None
    p = np.asarray(p, np.float64).reshape(-1)
    if len(p) != len(cfg.classes) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise VrferError(f"model {cfg.name!r}: train_prior must be {len(cfg.classes)} positive numbers")
    return p / p.sum()


MAX_PRIOR_BYTES = 2 ** 20      # 8 numbers; a megabyte is plenty


def read_prior_file(path, n_classes: int = len(CLASSES)):
    """--prior FILE: the JSON it holds (a list of class frequencies in class order, or {class: value}), read
    as it is; VrferError naming the file when it cannot be read. PostProcess checks the values."""
    where = f"--prior {path}"
    if not Path(path).exists() and not Path(path).is_symlink():
        raise VrferError(f"{where}: expected train, uniform or a JSON file of {n_classes} class frequencies "
                         "(file not found)")
    try:    # as a profile is read: a regular file (a pipe hung, /dev/zero filled memory), small, BOM, nesting
        return parse_json(read_regular(path, "prior file", MAX_PRIOR_BYTES), where, "prior file")
    except VrferError as e:
        msg = str(e)
        raise VrferError(msg if msg.startswith(where) else f"{where}: {msg.removeprefix(f'{path}: ')}") from None


def _prior_values(prior, classes) -> np.ndarray:
    """A target prior given as a JSON file, a list of len(classes) numbers or a {class: value} dict."""
    where = "prior"
    if isinstance(prior, (str, os.PathLike)):
        text = str(prior).strip()
        if "," in text and not Path(text).exists():            # "0.3,0.2,..." (a query parameter)
            prior = text.split(",")
        else:
            where = f"--prior {text}"
            prior = read_prior_file(text, len(classes))
    if isinstance(prior, dict):
        prior = {k if k in classes or not isinstance(k, str) else class_name(k): v for k, v in prior.items()}
        unknown = sorted(set(prior) - set(classes))
        missing = [c for c in classes if c not in prior]
        if unknown or missing:
            raise VrferError(f"{where}: needs a value for each class ({', '.join(classes)}); "
                             + (f"unknown {', '.join(map(str, unknown))}" if unknown else f"missing {', '.join(missing)}"))
        prior = [prior[c] for c in classes]
    try:
        p = np.asarray([float(v) for v in prior], np.float64)
    except (TypeError, ValueError):
        raise VrferError(f"{where}: expected {len(classes)} numbers, one per class") from None
    if len(p) != len(classes) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise VrferError(f"{where}: expected {len(classes)} positive numbers, one per class in the order "
                         f"{', '.join(classes)} (to leave a class out, answer among a class subset: classes)")
    return p / p.sum()


def parse_classes(classes, all_classes) -> tuple[str, ...] | None:
    """'a,b,c' or a list of class names -> a tuple in the model's class order; None: all classes. An empty
    set is refused (an answer among no classes has no meaning; a shell's unset variable usually made it)."""
    if classes is None:
        return None
    if not isinstance(classes, (str, list, tuple, set, frozenset)):
        raise VrferError(f"classes={type(classes).__name__}: expected class names, 'a,b,c' or a list")
    from ..classes import (
        class_name,  # the spellings labels.csv and calibrate take ("happy", "Angry")
    )
    names = [c.strip() for c in (classes.split(",") if isinstance(classes, str) else classes) if str(c).strip()]
    names = [class_name(c) if c not in all_classes else c for c in names]
    if not names:
        # named as both the CLI (--classes) and serve's HTTP/WebSocket parameter (classes) call it
        raise VrferError(f"classes {classes!r}: no class named; give some of: {', '.join(all_classes)} "
                         "(or leave classes out for all)")
    unknown = [c for c in names if c not in all_classes]
    if unknown:
        raise VrferError(f"classes: unknown class {unknown[0]!r}; the model's classes: {', '.join(all_classes)}")
    return tuple(c for c in all_classes if c in names)


class PostProcess:
    """What is done to the model's class scores before they are reported: a class prior and a class subset.

    The model was trained on FER+'s class frequencies (its training prior, 35% neutral ... 0.5% disgust)
    and its probabilities assume them. `prior` is the class prior the answers should assume instead
    (logit adjustment, Menon et al. 2021, applied after training):

        adjusted logit_c = logit_c + tau * (log target_c - log train_prior_c)

        prior="train"    target = the training prior: no change, the plain model (the default)
        prior="uniform"  target = equal frequencies: logit_c - tau * log train_prior_c (+ a constant),
                         probability moves from frequent to rare classes (balanced answers)
        prior=FILE/list  target = the given frequencies (a JSON list in class order, or {class: value})

    tau scales the shift (0: none; 1: the full Bayes correction). `classes` answers only among a subset:
    the other classes get probability 0 and the rest is renormalised (softmax over the subset).
    "uniform" and FILE need the training prior stored with the model (cfg.extra["train_prior"]).

    prior=None (and tau=None) take the model's own default, cfg.extra["default_post"] = {"prior": ...,
    "tau": ...}, chosen by measurement on FER+ valid for a bundled model (docs/RESULTS.md); a model that
    carries none answers plainly (prior "train"). An explicit prior without tau uses tau 1.
    """

    def __init__(self, cfg, prior=None, tau: float | None = None, classes=None):
        self.classes = tuple(cfg.classes)
        if prior is None:
            default = (cfg.extra or {}).get("default_post") or {}
            prior = default.get("prior", "train")
            tau = default.get("tau", 1.0) if tau is None else tau
        self.prior = prior
        tau = 1.0 if tau is None else tau
        try:
            self.tau = float(tau)
        except (TypeError, ValueError):
            raise VrferError(f"--prior-tau {tau!r}: expected a number >= 0") from None
        if not math.isfinite(self.tau) or self.tau < 0:
            raise VrferError(f"--prior-tau {tau}: expected a number >= 0")
        self.subset = parse_classes(classes, self.classes)
        self.train_prior = train_prior(cfg)
        self.shift = None
        if not (isinstance(self.prior, str) and self.prior == "train"):
            target = (np.full(len(self.classes), 1.0 / len(self.classes)) if self.prior == "uniform"
                      else _prior_values(self.prior, self.classes))
            if self.train_prior is None:
                raise VrferError(f"--prior {self.prior if isinstance(self.prior, str) else 'LIST'}: model "
                                 f"{cfg.name!r} carries no training prior (cfg.extra['train_prior']); "
                                 "only --prior train (the plain model) works with it")
            self.target = target
            if self.tau:
                self.shift = self.tau * (np.log(target) - np.log(self.train_prior))
        self.mask = (None if self.subset is None or len(self.subset) == len(self.classes)
                     else np.array([c in self.subset for c in self.classes]))

    @property
    def identity(self) -> bool:
        return self.shift is None and self.mask is None

    def apply(self, scores, logits: bool = False) -> np.ndarray:
        """Probabilities (or logits, logits=True) (N, C) or (C,) -> adjusted probabilities, float64.
        With nothing to adjust, probabilities come back unchanged."""
        scores = np.asarray(scores, np.float64)
        if self.identity and not logits:
            return scores
        if logits:
            s = scores.copy()
        else:
            with np.errstate(divide="ignore"):
                s = np.log(np.maximum(scores, 1e-300))    # log-probabilities = logits minus a per-row constant
        if self.shift is not None:
            s = s + self.shift
        if self.mask is not None:
            s = np.where(self.mask, s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=-1, keepdims=True)

    def spec(self) -> dict:
        """The settings as data (for the ONNX model card and examples/onnx_client.py)."""
        prior = self.prior if isinstance(self.prior, str) and self.prior in PRIOR_NAMES else \
            [float(v) for v in self.target]
        return {"prior": prior, "tau": self.tau, "classes": list(self.subset or self.classes),
                "train_prior": None if self.train_prior is None else [float(v) for v in self.train_prior],
                "formula": "p = softmax over the kept classes of (log probs + tau * (log target - log train_prior)); "
                           "target: train_prior for prior 'train' (no change), equal values for 'uniform', "
                           "else the listed values; classes not kept get 0"}


def softmax(logits) -> np.ndarray:
    """Logits (N, C) -> probabilities, float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True)) if z.size else z
    return e / e.sum(axis=-1, keepdims=True) if z.size else z


def adjust_probs(scores, cfg, prior=None, tau: float | None = None, classes=None, logits: bool = False) -> np.ndarray:
    """Probabilities (or logits) of a model with config `cfg` -> adjusted probabilities (see PostProcess)."""
    return PostProcess(cfg, prior, tau, classes).apply(scores, logits=logits)
