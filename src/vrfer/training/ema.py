"""An exponential moving average of the weights (Polyak averaging), the model that is validated and saved.

Why: the weights at the end of an SGD step jitter around a minimum; their running mean sits nearer its
centre and often generalises a little better, at no inference cost (unlike an ensemble). The average is
taken of the weights the forward pass uses (DSD masks applied) and of the BatchNorm statistics, under
the plain key names, so it loads into an unpruned copy of the model.
"""

from __future__ import annotations

import torch

from . import dsd


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.steps = 0
        self.shadow = dsd.plain_state_dict(model)

    def rate(self) -> float:
        # warm-up (as timm's ModelEma): the first steps are not dragged back to the starting weights
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.rate()
        for k, v in dsd.plain_state_dict(model).items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v, 1.0 - d)
            else:               # BatchNorm's num_batches_tracked: a count, not averaged
                s.copy_(v)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}

    def copy_to(self, plain_model: torch.nn.Module) -> torch.nn.Module:
        plain_model.load_state_dict(self.shadow)
        return plain_model
