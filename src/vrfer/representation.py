"""The network's representation of a face: the input of its last layer (`model.classifier`, a Linear).

Adaptation to a setup (vrfer.adapt) fits a new last layer on it, and calibration to a person
(vrfer.calibration) compares it with the person's own faces. Every vrfer architecture ends in
`self.classifier = nn.Linear(D, classes)`, so the representation is what that layer receives
(D = 384 for vrfer-cnn: the pooled features; dropout is off at inference).
"""

from __future__ import annotations

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


@torch.inference_mode()
def logits_and_features(model: nn.Module, crops, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """uint8 face crops (N, S, S) -> (logits (N, C), representation (N, D)), float32, in one pass."""
    model.eval()
    layer = head(model)
    grabbed: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0].detach()))
    logits = []
    try:
        for i in range(0, len(crops), batch_size):
            logits.append(model(prepare(crops[i:i + batch_size], model.cfg)).float())
    finally:
        hook.remove()
    d, c = layer.in_features, layer.out_features
    if not logits:
        return np.zeros((0, c), np.float32), np.zeros((0, d), np.float32)
    return (torch.cat(logits).cpu().numpy(),
            torch.cat(grabbed).float().flatten(1).cpu().numpy())
