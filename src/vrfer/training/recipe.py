"""Training recipes as data: TOML files shipped in vrfer/training/recipes, overridable from the CLI.

Every key is declared once below (SCHEMA: its default, type and allowed range); a recipe file or `--set
key=value` may change any of them, and an unknown key, or a value of the wrong type or out of range, is an
error naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from importlib import resources
from pathlib import Path

from ..datasets import DATASETS
from ..errors import VrferError

class Key:
    """One recipe key: its default (whose type is the key's type) and what values it allows.

    allowed: an interval such as "[0, 1)" or "(0, inf)" for a number (for a list of numbers: each item);
    choices: the allowed strings (for a list of strings: each item), or a function returning them;
    items: an interval for a list's length. Numbers must be finite."""

    def __init__(self, default, allowed: str = "", choices=None, items: str = ""):
        self.default, self.allowed, self.items = default, allowed, items
        self._choices = choices

    @property
    def choices(self) -> tuple | None:
        return self._choices() if callable(self._choices) else self._choices

    def check(self, where: str, value) -> None:
        """VrferError naming the key, the value and what is allowed, unless `value` fits."""
        ref = self.default
        if isinstance(ref, list):
            if not isinstance(value, list):
                raise VrferError(f"recipe: {where!r} must be a list, got {value!r}")
            if self.items and not _within(len(value), self.items):
                raise VrferError(f"recipe: {where!r} must have {_interval_words(self.items)} items, got {value!r}")
            item = Key(ref[0], self.allowed, self._choices)
            for v in value:
                if not item.fits(v):
                    raise VrferError(f"recipe: {where!r} items must each be {item.what()}, got {value!r}")
        elif not self.fits(value):
            raise VrferError(f"recipe: {where!r} must be {self.what()}, got {value!r}")

    def fits(self, value) -> bool:
        ref = self.default
        if isinstance(ref, bool) or isinstance(value, bool):
            return isinstance(ref, bool) and isinstance(value, bool)
        if isinstance(ref, (int, float)):
            if not isinstance(value, (float, int) if isinstance(ref, float) else int):
                return False
            return math.isfinite(value) and (not self.allowed or _within(value, self.allowed))
        if isinstance(ref, str):
            return isinstance(value, str) and (self.choices is None or value in self.choices)
        return True

    def what(self) -> str:
        ref = self.default
        if isinstance(ref, bool):
            return "true or false"
        if isinstance(ref, (int, float)):
            kind = "a number" if isinstance(ref, float) else "a whole number"
            return f"{kind} in {self.allowed}" if self.allowed else kind
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        return "a string"


def _bounds(interval: str) -> tuple[float, float, bool, bool]:
    """"[0, 1)" -> (0.0, 1.0, True, False): low, high, low included, high included."""
    lo, hi = (float(v) for v in interval[1:-1].split(","))
    return lo, hi, interval[0] == "[", interval[-1] == "]"


def _within(value, interval: str) -> bool:
    lo, hi, lo_in, hi_in = _bounds(interval)
    return (lo <= value if lo_in else lo < value) and (value <= hi if hi_in else value < hi)


def _interval_words(interval: str) -> str:
    lo, hi, _, _ = _bounds(interval)
    return f"{lo:g}" if lo == hi else f"at least {lo:g}" if math.isinf(hi) else f"{lo:g} to {hi:g}"


def _input_modes() -> tuple:
    from ..occlusion import INPUT_MODES      # imported when first needed: it loads torch
    return INPUT_MODES


def _label_modes() -> tuple:
    from ..datasets.labels import LABEL_MODES
    return LABEL_MODES


# Every recipe key, its default and its allowed values: the one declaration that recipe files, --set and
# the Python API are checked against (_check), before any data loads.
SCHEMA: dict = {
    "name": Key(""),
    "description": Key(""),
    "model": Key("vrfer-cnn"),
    "input_mode": Key("full", choices=_input_modes),   # full | upper-occluded | visible-half
    "occlusion": Key(0.5, "[0, 1)"),                  # fraction of rows hidden (upper-occluded / visible-half)
    "image_size": Key(0, "[0, 1024]"),                # 0 = the model's own crop size
    "seed": Key(0, "[0, 4294967295]"),                # numpy's seeds are unsigned 32-bit
    "init_from": Key(""),                             # run folder or .safetensors to start from (stage 2 <- stage 1)
    "backbone_weights": Key(""),                      # pretrained backbone file (vgg-face.mat, *_dag.pth, ...) for stage 1
    "amp": Key("off", choices=("auto", "bf16", "off")),   # bfloat16 autocast; auto: on a GPU, and on a CPU whose
                                                     # flags say it computes bf16 natively (AMX, AVX512_BF16). Off by
                                                     # default: float32 answers do not depend on the CPU, and bf16 is
                                                     # not faster for every model (benchmarks/bench_recipes.py --bf16)
    "data": {
        "datasets": Key(["ferplus"], choices=DATASETS, items="[1, 2]"),   # joint training set, one class order
        "label_mode": Key("majority", choices=_label_modes),  # majority | probability | crossentropy | multi_target
        "votes": Key("label", choices=("label", "fer2013new")),  # FER+ votes: label.csv or fer2013new.csv
        "val": Key("ferplus", choices=DATASETS),     # dataset whose validation split drives the LR rule and best.safetensors
        "affectnet_cap": Key(15000, "[0, inf)"),     # per-class cap on AffectNet training images (the paper's 88,021); 0: none
        "skip_bad": Key(False),
        "limit": Key(0, "[0, inf)"),                 # >0: use only this many training images (smoke tests)
        "val_limit": Key(0, "[0, inf)"),             # >0: validate on only this many images (0: the whole split)
        "balance": Key(0.0, "[0, 1]"),               # class-balanced sampling: image weight n_class^-balance (0 = plain
                                                     # shuffling, 0.5 = square-root, 1 = every class equally often)
    },
    "optim": {
        "lr": Key(0.01, "(0, inf)"),
        "momentum": Key(0.9, "[0, 1)"),
        "nesterov": Key(False),
        "weight_decay": Key(5e-4, "[0, inf)"),
        "batch_size": Key(64, "[1, inf)"),
        "epochs": Key(10, "[0, inf)"),               # total; with DSD enabled it is dense + sparse + redense
        "schedule": Key("plateau", choices=("plateau", "cosine", "constant")),  # plateau: the paper's rule
        "plateau_patience": Key(10, "[0, inf)"),     # divide by 10 when val error has not improved for more than N epochs
        "lr_floor": Key(1e-5, "[0, inf)"),
        "warmup_epochs": Key(0, "[0, inf)"),         # cosine only
        "label_smoothing": Key(0.0, "[0, 1)"),
        "ema": Key(0.0, "[0, 1)"),                   # >0: decay of a moving average of the weights (e.g. 0.998), which is
                                                     # what is validated, chosen as best and saved; 0 = the weights as trained
    },
    "augment": {"flip": Key(True),
                "shift": Key(0.0, "[0, 1)"),         # max translation, fraction of the crop side
                "rotate": Key(0.0, "[0, 180]"),      # max rotation, degrees
                "scale": Key(0.0, "[0, 1]"),         # max zoom in/out
                "headset": Key(0.0, "[0, 1]"),       # share of faces with a synthetic headset painted over the top
                "headset_edge": Key([0.4, 0.6], "[0, 1)", items="[2, 2]"),  # range of its lower edge, fraction
                                                                             # of crop height (low <= high)
                "photometric": Key(0.0, "[0, 1]"),   # share of faces with webcam-like degradations
                "mixup": Key(0.0, "[0, inf)"),       # alpha of mixup (Zhang et al. 2018): each batch blended with a
                                                     # shuffled copy of itself, images and label distributions, by
                                                     # one Beta(alpha, alpha) weight; 0 = off
                "erase": Key(0.0, "[0, 1]")},        # share of faces with random erasing (Zhong et al. 2020): one
                                                     # rectangle (2-33% of the visible face) replaced by noise
    "loss": {
        "logit_adjust": Key(0.0, "[0, inf)"),        # tau of the logit-adjusted loss (Menon et al. 2021); 0 = plain CE
        "supcon": Key(0.0, "[0, inf)"),              # weight of a supervised contrastive term on the representation
                                                     # (the last layer's input; Khosla et al. 2020): faces of one
                                                     # expression pulled together across people; 0 = off
        "supcon_temperature": Key(0.1, "(0, inf)"),
    },
    "dsd": {
        "enabled": Key(False),
        "dense": Key(0, "[0, inf)"),                 # epochs of the first dense phase
        "sparse": Key(0, "[0, inf)"),                # epochs of the sparse phase (masks re-computed after every epoch)
        "redense": Key(0, "[0, inf)"),               # epochs of the final dense phase
        "sparsity": Key([0.2, 0.5], "[0, 1)", items="[2, inf)"),  # [second conv, last conv], linear in between, or
                                                                   # one per conv layer; conv1 never pruned
    },
    "distill": {"teacher": Key(""),                  # a model, or "a+b+..." (ensemble)
                "weight": Key(0.0, "[0, 1]"),        # loss = (1 - weight) * CE + weight * distillation
                "temperature": Key(4.0, "(0, inf)")},
}


def _defaults(schema: dict) -> dict:
    return {k: _defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in schema.items()}


DEFAULTS: dict = _defaults(SCHEMA)


def _check(over: dict, schema: dict = SCHEMA, prefix: str = "") -> None:
    """Every key of `over` is known and its value is of the key's type and within its range."""
    for key, value in over.items():
        where = f"{prefix}{key}"
        if key.startswith("_") and not prefix:   # what vrfer records beside the keys (_origin)
            continue
        if key not in schema:
            raise VrferError(f"recipe: unknown key {where!r} (known: {', '.join(sorted(schema))})")
        ref = schema[key]
        if isinstance(ref, dict):
            if not isinstance(value, dict):
                raise VrferError(f"recipe: {where!r} must be a table, got {type(value).__name__}")
            _check(value, ref, where + ".")
        else:
            ref.check(where, value)


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
    _check(data)
    recipe = _merge(DEFAULTS, data)
    for text in overrides:
        o = parse_override(text)
        _check(o)
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
    _check(over)
    recipe = _merge(DEFAULTS, over)
    recipe["_origin"] = "api"
    validate(recipe)
    return recipe


def validate(r: dict) -> None:
    """The whole recipe against SCHEMA, and what relates keys to each other."""
    _check(r)
    if len(set(r["data"]["datasets"])) < len(r["data"]["datasets"]):
        raise VrferError(f"recipe: 'data.datasets' names a dataset twice: {r['data']['datasets']}")
    lo, hi = r["augment"]["headset_edge"]
    if lo > hi:
        raise VrferError(f"recipe: 'augment.headset_edge' must be [low, high] with low <= high, got {[lo, hi]}")
    if r["augment"]["mixup"] and r["data"]["label_mode"] not in ("majority", "crossentropy"):
        raise VrferError(f"recipe: 'augment.mixup' blends label distributions; it takes data.label_mode 'majority' or "
                         f"'crossentropy', not {r['data']['label_mode']!r}")
    if r["augment"]["mixup"] and r["loss"]["supcon"]:
        raise VrferError("recipe: 'augment.mixup' and 'loss.supcon' cannot be combined (a blended face has no one "
                         "expression to be pulled towards)")
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
        _check(o)
        for key, value in flatten(_merge(DEFAULTS, o)).items():
            if key in flatten(o) and flat.get(key) != value:
                out.append((key, flat.get(key), value))
    return out
