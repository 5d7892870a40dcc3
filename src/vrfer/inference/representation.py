"""The network's representation of a face: the input of its last layer (`model.classifier`, a Linear).

Adaptation to a setup (vrfer.personal.adapt) and calibration to a person (vrfer.personal.calibration) both refit the last layer on
it (`fit_head`). Every vrfer architecture ends in
`self.classifier = nn.Linear(D, classes)`, so the representation is what that layer receives
(D = 384 for vrfer-cnn: the pooled features; dropout is off at inference).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..errors import VrferError
from .preprocess import prepare


def head(model: nn.Module) -> nn.Linear:
    """The model's last layer, the one adaptation refits."""
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, nn.Linear):
        raise VrferError(f"model {getattr(getattr(model, 'cfg', None), 'name', '?')!r} has no final Linear "
                         "`classifier` layer: it cannot be adapted or calibrated")
    return layer


@contextlib.contextmanager
def grabbed_representation(model: nn.Module):
    """While inside: a list that receives the representation (N, D) of each forward pass of `model`.
    The one definition of the representation, shared by logits_and_features and the ONNX export."""
    grabbed: list[torch.Tensor] = []

    def grab(_m, inp):
        r = inp[0]
        grabbed.append(r if r.dim() == 2 else r.flatten(1))

    hook = head(model).register_forward_pre_hook(grab)
    try:
        yield grabbed
    finally:
        hook.remove()


@torch.inference_mode()
def logits_and_features(model: nn.Module, crops, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """uint8 face crops (N, S, S) -> (logits (N, C), representation (N, D)), float32, in one pass."""
    model.eval()
    layer = head(model)
    logits = []
    with grabbed_representation(model) as grabbed:
        for i in range(0, len(crops), batch_size):
            logits.append(model(prepare(crops[i:i + batch_size], model.cfg)).float())
    d, c = layer.in_features, layer.out_features
    if not logits:
        return np.zeros((0, c), np.float32), np.zeros((0, d), np.float32)
    return torch.cat(logits).cpu().numpy(), torch.cat(grabbed).float().cpu().numpy()


def fit_head(features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray,
             lam: float, rows=None, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on `features` (N, D) with integer `labels`, started at and pulled towards the
    layer (weight (C, D), bias (C,)): minimises mean cross-entropy + lam * ||W - weight||^2. The problem is
    convex; scipy's L-BFGS-B with the exact gradient solves it in milliseconds, deterministically. rows: the
    classes whose row may change (default all); the others keep the given row exactly. Returns the new
    (weight, bias) as float32.

    The solver sees the features centred (x - mean) and a bias that absorbs dW @ mean: the same problem
    (the penalty is on dW only), but without the features' large common direction, which made L-BFGS take
    more steps (docs/RESULTS.md, "Adaptation and calibration", speed)."""
    from scipy.optimize import minimize
    X = np.asarray(features, np.float64)
    mean = X.mean(axis=0)
    y = np.asarray(labels, np.int64)
    W0, b0 = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    free = np.arange(len(b0)) if rows is None else np.asarray(sorted(rows), np.int64)
    k, d = len(free), X.shape[1]
    z0 = X @ W0.T + b0                      # the given layer's logits: only the free rows move from them
    X = X - mean
    target = np.eye(len(b0))[y][:, free]

    def loss_and_grad(theta):
        dW, db = theta[:k * d].reshape(k, d), theta[k * d:]
        z = z0.copy()
        z[:, free] += X @ dW.T + db
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(len(y)), y].mean() + lam * (dW ** 2).sum()
        g = (np.exp(logp[:, free]) - target) / len(X)          # d loss / d logits of the free rows
        return loss, np.concatenate([(g.T @ X + 2 * lam * dW).ravel(), g.sum(axis=0)])

    res = minimize(loss_and_grad, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": iters})
    W, b = W0.copy(), b0.copy()
    dW = res.x[:k * d].reshape(k, d)
    W[free] += dW
    b[free] += res.x[k * d:] - dW @ mean
    return W.astype(np.float32), b.astype(np.float32)
