"""Is there a mouth in the half the model reads? A check on each detected face, from the model's own representation.

Behind a real headset the face detector also boxes things that are not faces: a headset's dimpled front, a hand
round a controller, a patterned shirt or wall, or a real face's chin and collar when it took the visible lower face
for a whole one (issue 33). Their detector scores and keypoints look like a face's; what they lack is a mouth in the
visible half, the lower half of the square vrfer cuts and the only part the lower-face model reads. The model's
representation of that half (the last layer's input, which every backend gives) tells the two apart far better
than HOG features or a small CNN on the pixels did in a throw-away comparison (docs/RESULTS.md, "Real-looking
headsets"; fitted by tools/fit_mouth_check.py).

The check is a head on the representation, stored in the model's config (`extra["mouth_check"]`, beside the
referenced head): the network's weights and fingerprint are untouched, and a model without it (vrfer-full, a
user's own) gets no check. vrfer.inference.pipeline.Pipeline applies it to photos and to the face a video's tracker acquires.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import VrferError

KEY = "mouth_check"


@dataclass
class MouthCheck:
    """p(mouth) = sigmoid(weight . (representation - mean) / scale + bias); a face is kept at p >= threshold."""
    weight: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float
    fitted_on: dict

    def probability(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) representations -> (N,) probabilities that the visible half holds a mouth."""
        z = ((np.asarray(feats, np.float64) - self.mean) / self.scale) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def keeps(self, feats: np.ndarray) -> np.ndarray:
        return self.probability(feats) >= self.threshold

    def to_json(self) -> dict:
        return {"formula": "sigmoid(weight @ ((representation - mean) / scale) + bias) >= threshold",
                "weight": self.weight.tolist(), "bias": float(self.bias), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "threshold": float(self.threshold), "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, d: dict, width: int | None = None, where: str = "model") -> "MouthCheck":
        try:
            parts = [np.asarray(d[k], np.float64) for k in ("weight", "mean", "scale")]
            bias, threshold = float(d["bias"]), float(d["threshold"])
        except (KeyError, TypeError, ValueError):
            raise VrferError(f"{where}: its mouth check is not readable") from None
        n = parts[0].shape
        if len(n) != 1 or any(p.shape != n for p in parts) or (width is not None and n[0] != width) \
                or not all(np.isfinite(p).all() for p in parts) or (parts[2] <= 0).any():
            raise VrferError(f"{where}: its mouth check does not fit the model's representation")
        return cls(parts[0], bias, parts[1], parts[2], threshold, d.get("fitted_on", {}))


def check_of(cfg, width: int | None = None) -> MouthCheck | None:
    """The model's mouth check (from its config), or None when it has none."""
    d = (getattr(cfg, "extra", None) or {}).get(KEY)
    return None if d is None else MouthCheck.from_json(d, width, f"model {getattr(cfg, 'name', '?')!r}")


def with_check(cfg, check: MouthCheck):
    """A copy of the config carrying `check` (the weights are untouched: the fingerprint stays)."""
    from dataclasses import replace
    return replace(cfg, extra={**(cfg.extra or {}), KEY: check.to_json()})


def fit(feats: np.ndarray, labels: np.ndarray, lam: float = 1e-2, keep: float = 0.97,
        keep_on: np.ndarray | None = None, fitted_on: dict | None = None) -> MouthCheck:
    """Logistic regression (L2 lam on standardised representations, both classes weighted equally) of
    labels (1: a mouth in the visible half, 0: none); the threshold keeps the share `keep` of the positives
    marked by keep_on (default: all positives)."""
    from scipy.optimize import minimize
    x, y = np.asarray(feats, np.float64), np.asarray(labels, np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    wc = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        m = z @ w + b
        r = wc * (1 / (1 + np.exp(-np.clip(m, -50, 50))) - y) / len(y)
        return (wc * (np.logaddexp(0, m) - y * m)).mean() + 0.5 * lam * w @ w, np.append(z.T @ r + lam * w, r.sum())

    theta = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 1000}).x
    check = MouthCheck(theta[:-1], float(theta[-1]), mean, scale, 0.5, fitted_on or {})
    marked = (y == 1) if keep_on is None else np.asarray(keep_on, bool)
    check.threshold = float(np.quantile(check.probability(x[marked]), 1 - keep))
    return check
