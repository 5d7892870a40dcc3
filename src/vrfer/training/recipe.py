"""Training recipes as data: TOML files shipped in vrfer/training/recipes, overridable from the CLI.

Every key has a default below; a recipe file or `--set key=value` may change any of them, and an
unknown key or a value of the wrong type is an error naming the key.
"""

from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources
from pathlib import Path

from ..errors import VrferError

DEFAULTS: dict = {
    "name": "",
    "description": "",
    "model": "vrfer-cnn",
    "input_mode": "full",            # full | upper-occluded | visible-half
    "occlusion": 0.5,                # fraction of rows hidden (upper-occluded / visible-half)
    "image_size": 0,                 # 0 = the model's own crop size
    "seed": 0,
    "init_from": "",                 # run folder or .safetensors to start from (stage 2 <- stage 1)
    "backbone_weights": "",          # pretrained backbone file (vgg-face.mat, *_dag.pth, ...) for stage 1
    "data": {
        "datasets": ["ferplus"],     # ferplus and/or affectnet (joint training set, one class order)
        "label_mode": "majority",    # majority | probability | crossentropy | multi_target
        "votes": "label",            # FER+ votes: label (label.csv) | fer2013new
        "val": "ferplus",            # dataset whose validation split drives the LR rule and best.safetensors
        "affectnet_cap": 15000,      # per-class cap on AffectNet training images (the paper's 88,021)
        "skip_bad": False,
        "limit": 0,                  # >0: use only this many training images (smoke tests)
        "val_limit": 0,              # >0: validate on only this many images (0: the whole split)
        "balance": 0.0,              # class-balanced sampling: image weight n_class^-balance (0 = plain
                                     # shuffling, 0.5 = square-root, 1 = every class equally often)
    },
    "optim": {
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 5e-4,
        "batch_size": 64,
        "epochs": 10,                # total; with DSD enabled it is dense + sparse + redense
        "schedule": "plateau",       # plateau (the paper's rule) | cosine | constant
        "plateau_patience": 10,      # divide by 10 when val error has not improved for more than N epochs
        "lr_floor": 1e-5,
        "warmup_epochs": 0,          # cosine only
        "label_smoothing": 0.0,
        "ema": 0.0,                  # >0: decay of a moving average of the weights (e.g. 0.998), which is
                                     # what is validated, chosen as best and saved; 0 = the weights as trained
    },
    "augment": {"flip": True, "shift": 0.0, "rotate": 0.0, "scale": 0.0,
                "headset": 0.0,              # share of faces with a synthetic headset painted over the top
                "headset_edge": [0.4, 0.6],  # range of the headset's lower edge, fraction of crop height
                "photometric": 0.0},         # share of faces with webcam-like degradations
    "loss": {
        "logit_adjust": 0.0,         # tau of the logit-adjusted loss (Menon et al. 2021); 0 = plain CE
    },
    "dsd": {
        "enabled": False,
        "dense": 0,                  # epochs of the first dense phase
        "sparse": 0,                 # epochs of the sparse phase (masks re-computed after every epoch)
        "redense": 0,                # epochs of the final dense phase
        "sparsity": [0.2, 0.5],      # [second conv, last conv], linear in between; conv1 never pruned
    },
    "distill": {"teacher": "", "weight": 0.0, "temperature": 4.0},  # teacher: a model, or "a+b+..." (ensemble)
}


def _check(over: dict, base: dict, prefix: str = "") -> None:
    for key, value in over.items():
        where = f"{prefix}{key}"
        if key not in base:
            raise VrferError(f"recipe: unknown key {where!r} (known: {', '.join(sorted(base))})")
        ref = base[key]
        if isinstance(ref, dict):
            if not isinstance(value, dict):
                raise VrferError(f"recipe: {where!r} must be a table, got {type(value).__name__}")
            _check(value, ref, where + ".")
        elif isinstance(ref, bool):
            if not isinstance(value, bool):
                raise VrferError(f"recipe: {where!r} must be true or false, got {value!r}")
        elif isinstance(ref, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise VrferError(f"recipe: {where!r} must be a number, got {value!r}")
        elif isinstance(ref, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise VrferError(f"recipe: {where!r} must be a whole number, got {value!r}")
        elif isinstance(ref, str):
            if not isinstance(value, str):
                raise VrferError(f"recipe: {where!r} must be a string, got {value!r}")
        elif isinstance(ref, list):
            if not isinstance(value, list):
                raise VrferError(f"recipe: {where!r} must be a list, got {value!r}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = float(v) if isinstance(out[k], float) and not isinstance(v, bool) else v
    return out


def recipe_names() -> list[str]:
    folder = resources.files("vrfer.training.recipes")
    return sorted(e.name[:-5] for e in folder.iterdir() if e.name.endswith(".toml"))


def _read_toml(name_or_file: str) -> tuple[dict, str]:
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise VrferError(f"{path}: recipe file not found")
        try:
            text, origin = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise VrferError(f"{path}: not a UTF-8 text file (a recipe is TOML text)") from None
    else:
        entry = resources.files("vrfer.training.recipes").joinpath(f"{name_or_file}.toml")
        if not entry.is_file():
            raise VrferError(f"unknown recipe {name_or_file!r}; shipped recipes: {', '.join(recipe_names())} "
                             "(or give a path to a .toml file)")
        text, origin = entry.read_text(), f"vrfer:{name_or_file}"
    try:
        return tomllib.loads(text), origin
    except tomllib.TOMLDecodeError as e:
        raise VrferError(f"{origin}: not valid TOML ({e})") from None


def parse_override(text: str) -> dict:
    """'optim.lr=0.1' -> {'optim': {'lr': 0.1}}; the value is read as TOML (strings may be bare)."""
    if "=" not in text:
        raise VrferError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_recipe(name_or_file: str, overrides: list[str] | tuple = ()) -> dict:
    data, origin = _read_toml(name_or_file)
    _check(data, DEFAULTS)
    recipe = _merge(DEFAULTS, data)
    for text in overrides:
        o = parse_override(text)
        _check(o, DEFAULTS)
        recipe = _merge(recipe, o)
        if "epochs" in o.get("optim", {}) and recipe["dsd"]["enabled"]:
            raise VrferError(f"--set {text}: 'optim.epochs' has no effect in a recipe with dsd.enabled; its "
                             "epochs are dsd.dense + dsd.sparse + dsd.redense")
    recipe["name"] = recipe["name"] or Path(origin).stem.replace("vrfer:", "")
    recipe["_origin"] = origin
    validate(recipe)
    return recipe


def from_dict(over: dict) -> dict:
    """A recipe from a plain dict (the Python API), validated like a file."""
    _check(over, DEFAULTS)
    recipe = _merge(DEFAULTS, over)
    recipe["_origin"] = "api"
    validate(recipe)
    return recipe


def validate(r: dict) -> None:
    from ..datasets.labels import LABEL_MODES
    from ..occlusion import INPUT_MODES
    choices = {("input_mode",): INPUT_MODES, ("data", "label_mode"): LABEL_MODES,
               ("data", "votes"): ("label", "fer2013new"), ("optim", "schedule"): ("plateau", "cosine", "constant")}
    for keys, allowed in choices.items():
        v = r
        for k in keys:
            v = v[k]
        if v not in allowed:
            raise VrferError(f"recipe: {'.'.join(keys)!r} must be one of {', '.join(allowed)}, got {v!r}")
    for ds in r["data"]["datasets"]:
        if ds not in ("ferplus", "affectnet"):
            raise VrferError(f"recipe: 'data.datasets' entry {ds!r} must be ferplus or affectnet")
    if not r["data"]["datasets"]:
        raise VrferError("recipe: 'data.datasets' is empty")
    sp = r["dsd"]["sparsity"]
    if not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in sp):
        raise VrferError(f"recipe: 'dsd.sparsity' values must be in [0, 1), got {sp}")
    lo_hi = r["augment"]["headset_edge"]
    if len(lo_hi) != 2 or not all(isinstance(x, (int, float)) for x in lo_hi) or not 0 <= lo_hi[0] <= lo_hi[1] < 1:
        raise VrferError(f"recipe: 'augment.headset_edge' must be [low, high] with 0 <= low <= high < 1, got {lo_hi}")
    for key in ("headset", "photometric"):
        if not 0 <= r["augment"][key] <= 1:
            raise VrferError(f"recipe: 'augment.{key}' is a share of faces, in [0, 1]; got {r['augment'][key]}")
    if r["optim"]["batch_size"] < 1 or r["optim"]["lr"] <= 0:
        raise VrferError("recipe: 'optim.batch_size' and 'optim.lr' must be positive")
    if not 0 <= r["optim"]["momentum"] < 1:
        raise VrferError(f"recipe: 'optim.momentum' must be in [0, 1), got {r['optim']['momentum']}")
    if r["optim"].get("weight_decay", 0) < 0:
        raise VrferError(f"recipe: 'optim.weight_decay' must be >= 0, got {r['optim']['weight_decay']}")
    if not 0 <= r["optim"]["ema"] < 1:
        raise VrferError(f"recipe: 'optim.ema' is a decay in [0, 1) (0 = off), got {r['optim']['ema']}")
    if not 0 <= r["data"]["balance"] <= 1:
        raise VrferError(f"recipe: 'data.balance' is an exponent in [0, 1], got {r['data']['balance']}")
    for key in ("limit", "val_limit"):
        if r["data"][key] < 0:
            raise VrferError(f"recipe: 'data.{key}' must be 0 (everything) or a positive number of images")
    if total_epochs(r) < 1:
        key = "dsd.dense + dsd.sparse + dsd.redense" if r["dsd"]["enabled"] else "optim.epochs"
        raise VrferError(f"recipe: {key!r} must add up to at least 1 epoch, got {total_epochs(r)}")


def total_epochs(r: dict) -> int:
    d = r["dsd"]
    return d["dense"] + d["sparse"] + d["redense"] if d["enabled"] else r["optim"]["epochs"]


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_recorded(run_dir) -> dict:
    """The recipe a training run recorded in its folder (recipe.json): what it ran with."""
    path = Path(run_dir) / "recipe.json"
    if not path.is_file():
        raise VrferError(f"{run_dir}: nothing to resume (no recipe.json: not a training run folder)")
    try:
        recipe = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VrferError(f"{path}: cannot read the recorded recipe ({e})") from None
    if not isinstance(recipe, dict) or "data" not in recipe:
        raise VrferError(f"{path}: not a vrfer recipe")
    return with_defaults(recipe)


def with_defaults(recipe: dict, base: dict = DEFAULTS) -> dict:
    """A recorded recipe with the keys added to vrfer since it was recorded, at their defaults (which
    keep the old behaviour), so a run started by an older vrfer still resumes."""
    out = dict(recipe)
    for k, v in base.items():
        if k not in out:
            out[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_defaults(out[k], v)
    return out


def changed_keys(recipe: dict, overrides: list[str] | tuple) -> list[tuple[str, object, object]]:
    """(key, recorded value, asked value) for every KEY=VALUE override that would change `recipe`."""
    out = []
    flat = flatten(recipe)
    for text in overrides:
        o = parse_override(text)
        _check(o, DEFAULTS)
        for key, value in flatten(_merge(DEFAULTS, o)).items():
            if key in flatten(o) and flat.get(key) != value:
                out.append((key, flat.get(key), value))
    return out
