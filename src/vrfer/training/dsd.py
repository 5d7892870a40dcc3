"""Dense-Sparse-Dense training (Han et al., ICLR 2017), as the paper applies it to its CNNs.

Dense: train normally. Sparse: after every epoch, zero the given fraction of smallest-magnitude
weights of each conv layer (conv1 never) and keep them at zero while the rest train: done with
torch.nn.utils.prune (the mask multiplies the weight in forward, so pruned weights get no gradient).
Redense: remove the masks; pruned weights restart from zero and train again.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from ..errors import VrferError


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def layer_sparsity_targets(model: nn.Module, sparsity) -> dict[str, float]:
    """Per-conv-layer pruning rates: [s2, sL] rises linearly from conv2 to the last conv; a list with
    one value per conv layer is taken as is. conv1 is never pruned."""
    convs = [n for n, _ in conv_layers(model)]
    sparsity = [float(s) for s in sparsity]
    if len(sparsity) == len(convs):
        rates = sparsity
    elif len(sparsity) == 2:
        k = len(convs) - 1
        rates = [0.0] + [sparsity[0] + (sparsity[1] - sparsity[0]) * (i / max(k - 1, 1)) for i in range(k)]
    else:
        raise VrferError(f"recipe: 'dsd.sparsity' needs 2 values or one per conv layer ({len(convs)} in "
                         f"{getattr(getattr(model, 'cfg', None), 'arch', 'this model')}), got {len(sparsity)}")
    rates[0] = 0.0
    return dict(zip(convs, rates))


def phase_of(epoch: int, dense: int, sparse: int) -> str:
    """Phase of a 0-based epoch: 'dense', 'sparse' or 'redense'."""
    if epoch < dense:
        return "dense"
    if epoch < dense + sparse:
        return "sparse"
    return "redense"


def enter_phase(model: nn.Module, epoch: int, cfg, rates: dict[str, float]) -> str:
    """The phase of a 0-based epoch under the recipe's `dsd` section (vrfer.training.recipe.DSD; always 'dense'
    when it is not enabled), with the model's masks made to match it: attached on entering the sparse phase,
    removed after it."""
    if not cfg.enabled:
        return "dense"
    phase = phase_of(epoch, cfg.dense, cfg.sparse)
    if phase == "sparse" and not is_pruned(model):
        apply_masks(model, rates)
    if phase == "redense" and is_pruned(model):
        remove_masks(model)  # pruned weights restart from zero
    return phase


def is_pruned(model: nn.Module) -> bool:
    return any(prune.is_pruned(m) for _, m in conv_layers(model))


def apply_masks(model: nn.Module, rates: dict[str, float]) -> None:
    """(Re)compute each layer's mask from the current weight magnitudes and attach it."""
    modules = dict(conv_layers(model))
    for name, rate in rates.items():
        m = modules[name]
        if prune.is_pruned(m):
            prune.remove(m, "weight")  # bake the old mask in, so the new one ranks all weights afresh
        if rate > 0:
            prune.l1_unstructured(m, "weight", amount=rate)


def attach_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Re-attach saved masks (resume in the sparse phase)."""
    modules = dict(conv_layers(model))
    for name, mask in masks.items():
        prune.custom_from_mask(modules[name], "weight", mask)


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight_mask.detach().clone() for n, m in conv_layers(model) if prune.is_pruned(m)}


def remove_masks(model: nn.Module) -> None:
    for _, m in conv_layers(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")


def measured_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights in each conv layer, as the forward pass sees them."""
    return {n: float((m.weight == 0).float().mean()) for n, m in conv_layers(model)}


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with masks baked in and the usual key names (weight, not weight_orig/weight_mask)."""
    out, sd = {}, model.state_dict()
    for k, v in sd.items():
        if k.endswith("weight_mask"):
            continue
        if k.endswith("weight_orig"):
            base = k[: -len("_orig")]
            v = v * sd[base + "_mask"]
            k = base
        out[k] = v.detach().clone()
    return out
