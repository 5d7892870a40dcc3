"""A recipe's optimiser (SGD, no weight decay on biases and norms) and learning-rate schedule."""

from __future__ import annotations

import math

import torch

from .recipe import Optim


def make_optimizer(model, o: Optim) -> torch.optim.Optimizer:
    # built before any DSD mask, so the parameter order is the same in every run and on resume
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": o.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)


def cosine_lr(step: int, total: int, warmup: int, floor: float) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine from 1 down to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def make_scheduler(opt, o: Optim, epochs: int, steps_per_epoch: int):
    """plateau: stepped once per epoch with the validation error; cosine and constant: once per step."""
    if o.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1,
                                                          patience=o.plateau_patience, min_lr=o.lr_floor)
    if o.schedule == "cosine":
        total, warm, floor = epochs * steps_per_epoch, o.warmup_epochs * steps_per_epoch, o.lr_floor / o.lr
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_lr(step, total, warm, floor))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
