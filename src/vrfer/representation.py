"""The network's representation of a face: the input of its last layer (`model.classifier`, a Linear).

Adaptation to a setup (vrfer.adapt) fits a new last layer on it, and calibration to a person
(vrfer.calibration) compares it with the person's own faces. Every vrfer architecture ends in
`self.classifier = nn.Linear(D, classes)`, so the representation is what that layer receives
(D = 384 for vrfer-cnn: the pooled features; dropout is off at inference).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .errors import VrferError
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
