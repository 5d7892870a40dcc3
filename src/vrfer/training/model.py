"""The network a run trains: built from the recipe (architecture, input mode, class set, pretrained backbone) or
started from another model (init_from, stage 2 from stage 1), or a resumed run's own; its class prior folded
into the classifier's bias while it is validated and saved; saved with DSD masks baked in."""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path

import torch

from ..errors import VrferError
from ..inference.loader import resolve
from ..models.importers import load_backbone_weights
from ..models.registry import create_model, load_checkpoint, save_model
from . import dsd
from .recipe import Recipe

# architectures whose recipes (the paper's) are meant to start from a public pretrained release: from
# random weights, with 0-255 pixels (std 1, as those releases expect), their training diverges
PRETRAINED_ARCHS = ("vgg-face", "vgg-f")


def build_model(recipe: Recipe, log=None):
    """The network a recipe starts from. log: where to say what was loaded (None: silent)."""
    over = {"input_mode": recipe.input_mode, "occlusion": recipe.occlusion}
    if recipe.image_size:
        over["image_size"] = recipe.image_size
    bw = recipe.backbone_weights
    if bw and not recipe.init_from and not Path(bw).exists() and bw != "imagenet":
        raise VrferError(f"recipe: backbone_weights {bw!r} does not exist")
    if recipe.init_from:   # stage 2 starts from stage 1's weights: a run folder, a file or a bundled model
        return _init_from(recipe, over)
    classes = recipe.class_names
    model = create_model(recipe.model, pretrained=False, **over, **({"classes": classes} if classes else {}))
    if bw:
        report = load_backbone_weights(model, bw)
        if log:
            log(f"backbone weights: {report}")
    elif model.cfg.arch in PRETRAINED_ARCHS:
        print(f"vrfer: warning: {model.cfg.arch} starts from random weights (backbone_weights is empty); "
              "the paper fine-tunes the pretrained network (--set backbone_weights=FILE), and from "
              "random weights this recipe's training can diverge", file=sys.stderr, flush=True)
    return model


def _init_from(recipe: Recipe, over: dict):
    try:
        weights = resolve(recipe.init_from, "torch").weights
    except VrferError:
        raise VrferError(f"recipe: init_from {recipe.init_from!r} is neither a file, a run folder nor a "
                         "bundled model") from None
    model = load_checkpoint(weights, **over)
    if recipe.class_names and recipe.class_names != tuple(model.cfg.classes):
        raise VrferError(f"recipe: classes {', '.join(recipe.class_names)} are not those of init_from "
                         f"{recipe.init_from!r} ({', '.join(model.cfg.classes)}); a run started from a model "
                         "keeps its classes (leave classes out)")
    return model


def starting_model(recipe: Recipe, out: Path, resume: bool, log=None):
    """The network a run starts from. A resumed run's own best.safetensors has its architecture and config, so
    resuming needs nothing outside the run folder (init_from or backbone_weights may have moved); the
    checkpoint's weights replace these."""
    if resume and (out / "best.safetensors").is_file():
        return load_checkpoint(out / "best.safetensors")
    return build_model(recipe, log=log)


@contextlib.contextmanager
def prior_in_bias(model, offset: torch.Tensor | None):
    """While inside, the classifier's bias includes `offset` (tau * log prior of a logit-adjusted run).

    A model trained with the logit-adjusted loss learns balanced logits f(x); f(x) + tau * log(prior)
    are the ordinary, prior-calibrated logits. Validation and every saved file use the latter, so a
    saved model means the same whatever loss trained it, and inference-time prior knobs stay one thing.
    """
    if offset is None:
        yield
        return
    bias = model.classifier.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.add_(offset.to(bias.device))
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(saved)  # exactly as before (adding and subtracting is not exact in float)


def save_model_plain(model, path: Path) -> None:
    """Save with DSD masks baked in, under the usual weight names."""
    if dsd.is_pruned(model):
        clone = copy.deepcopy(model)
        dsd.remove_masks(clone)
        save_model(clone, path, model.cfg)
    else:
        save_model(model, path)
