"""A trained model as a named model that ships inside vrfer (vrfer/pretrained/NAME.safetensors, float16).

    >>> package_model("runs/cpu-lower", "vrfer-lower", trained_on="FER+ train ...", force=True)

The packaged file is the input model under a new name: its weights (float16) and its whole config, with
everything the config carries (vrfer.models.ModelConfig.extra: the training prior, the default
post-processing `default_post`, an adaptation record, results, ...). What packaging adds: the name, what it
was trained on, a description, results, the run's recipe. A model that carries no `default_post` and
replaces a model of the same name that does (re-shipping a model from its run) keeps the replaced model's,
so that re-packaging never changes a shipped model's answers unnoticed; `default_post` sets it explicitly.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from .errors import VrferError
from .inference.postprocess import PostProcess, train_prior
from .models.registry import load_checkpoint, read_config, save_model
from .outputs import output_file
from .training.recipe import load_recorded

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
RECIPE_KEYS = ("name", "seed", "input_mode", "model")     # what a packaged model records of its run's recipe


class Packaged(NamedTuple):
    path: Path
    cfg: object               # the packaged model's ModelConfig
    default_post_from: str    # where its default post-processing came from: "model", "replaced", "given", ""


def check_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name):
        raise VrferError(f"--name {name!r}: a model name is letters, digits, '.', '_' and '-' (e.g. vrfer-lower), "
                         "no path")
    return name


def parse_results(items) -> dict[str, str]:
    """KEY=VALUE texts -> {KEY: VALUE}."""
    for kv in items:
        if "=" not in kv:
            raise VrferError(f"--result {kv!r}: expected KEY=VALUE, e.g. ferplus_test_acc=0.8193")
    return dict(kv.split("=", 1) for kv in items)


def parse_default_post(text: str) -> dict:
    """'uniform:0.25' / 'uniform' (tau 1) / 'train' -> {"prior": ..., "tau": ...}, a cfg.extra["default_post"]."""
    prior, _, tau = str(text).partition(":")
    try:
        value = float(tau) if tau else 1.0
    except ValueError:
        value = math.nan
    if prior not in ("train", "uniform") or not 0 <= value < math.inf:
        raise VrferError(f"--default-post {text!r}: expected train, uniform or uniform:TAU with TAU >= 0 "
                         "(e.g. uniform:0.25)")
    return {"prior": prior, "tau": value}


def packaged_config(cfg, name: str, trained_on: str, description: str = "", results: dict | None = None,
                    recipe: dict | None = None, replaced=None, default_post: dict | None = None):
    """(the config a packaged model gets, where its default_post came from): `cfg` renamed, with every field
    and extra it carries; `results` added to its own. `replaced`: the config of the model the file replaces,
    whose default_post a model without one keeps when it is the same name (a re-shipped model)."""
    extra = dict(cfg.extra or {})
    if recipe:
        extra["recipe"] = {k: recipe[k] for k in RECIPE_KEYS if k in recipe}
    extra["results"] = {**(extra.get("results") or {}), **(results or {})}
    source = "model" if "default_post" in extra else ""
    if default_post is not None:
        extra["default_post"], source = dict(default_post), "given"
    elif not source and replaced is not None and replaced.name == name and "default_post" in (replaced.extra or {}):
        extra["default_post"], source = dict(replaced.extra["default_post"]), "replaced"
    new = replace(cfg, name=name, weights=f"{name}.safetensors", trained_on=trained_on,
                  description=description or cfg.description, extra=extra)
    prior = extra.get("default_post", {}).get("prior", "train")
    if prior != "train" and train_prior(new) is None:
        raise VrferError(f"default post-processing prior {prior!r} needs the training prior, which this model does "
                         "not carry (cfg.extra['train_prior']); give --default-post train")
    PostProcess(new)     # the default post-processing works with this model
    return new, source


def package_model(run, name: str, trained_on: str, description: str = "", results: dict | None = None,
                  out=None, force: bool = False, default_post: dict | None = None) -> Packaged:
    """Write the model of a training run folder (its best.safetensors) or .safetensors file as the bundled
    model `name` (float16), or to `out`. Replacing a bundled model of that name needs force=True."""
    from importlib import resources

    check_name(name)
    model = load_checkpoint(Path(run))
    recipe = None
    if (Path(run) / "recipe.json").is_file():
        recipe = load_recorded(Path(run)).to_dict()
    bundled = Path(str(resources.files("vrfer.pretrained"))) / f"{name}.safetensors"
    if not out and bundled.exists() and not force:
        # the shipped models live here: replacing one changes every command's default answers
        raise VrferError(f"{bundled}: a model named {name!r} is already in the package; add --force to replace it "
                         "or --out to write elsewhere")
    out = output_file(out or bundled)
    replaced = _model_config(out)
    cfg, source = packaged_config(model.cfg, name, trained_on, description, results, recipe, replaced, default_post)
    save_model(model, out, cfg, half=True)
    return Packaged(out, cfg, source)


def _model_config(path: Path):
    """The config of the vrfer model file at `path`, None where there is none (no file, or not a model)."""
    if not path.is_file():
        return None
    try:
        return read_config(path)
    except VrferError:
        return None
