"""Training recipes as typed data: TOML files shipped in vrfer/training/recipes, overridable from the CLI.

A recipe is a frozen `Recipe`: top-level keys (model, classes, input_mode, seed, ...) and one section per TOML
table: `Data`, `Optim`, `Augment` (vrfer.augment), `Loss`, `DSD`, `Distill`. Every key is declared once, as a
field of these classes (`key`: its default, whose type is the key's type, and its allowed values). A recipe
file, `--set key=value` or the Python API's dict (`from_dict`) may change any of them; an unknown key, or a value
of the wrong type or out of range, is an error naming the key, the value and what is allowed. `Recipe.to_dict`
is what a run records (recipe.json, checkpoint.pt); `from_record` reads it back.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path

from ..augment import Augment
from ..classes import class_set
from ..datasets import DATASETS
from ..datasets.labels import LABEL_MODES
from ..errors import VrferError


def key(default, allowed: str = "", choices=None, items: str = "", check=None):
    """A recipe key's field: its default (whose type is the key's type) and what values it allows.

    allowed: an interval such as "[0, 1)" or "(0, inf)" for a number (for a tuple: each item);
    choices: the allowed strings (for a tuple of strings: each item), or a function returning them;
    items: an interval for a tuple's length; check(where, value): raises VrferError for a value it refuses.
    Numbers must be finite."""
    return field(default=default, metadata={"allowed": allowed, "choices": choices, "items": items, "check": check})


class Key:
    """One recipe key as checked: a dataclass field's default and its metadata (`key`)."""

    def __init__(self, default, allowed: str = "", choices=None, items: str = "", check=None):
        self.default, self.allowed, self.items, self._check = default, allowed, items, check
        self._choices = choices

    @classmethod
    def of(cls, f) -> "Key":
        return cls(f.default, **f.metadata)

    @property
    def choices(self) -> tuple | None:
        return self._choices() if callable(self._choices) else self._choices

    def check(self, where: str, value) -> None:
        """VrferError naming the key, the value and what is allowed, unless `value` fits."""
        ref = self.default
        if self._check is not None:
            self._check(where, value)
        elif isinstance(ref, tuple):
            if not isinstance(value, (list, tuple)):
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


def _class_set_value(where: str, value) -> None:
    """`classes`: "" (the model's own), a registered class set's name (vrfer.classes) or a list of class names."""
    if value == "":
        return
    if not isinstance(value, (str, list, tuple)):
        raise VrferError(f"recipe: {where!r} must be a class set's name or a list of class names, got {value!r}")
    try:
        class_set(value)
    except VrferError as e:
        raise VrferError(f"recipe: {where!r}: {e}") from None


# ---------------------------------------------------------------- the recipe's keys, each declared once

@dataclass(frozen=True)
class Data:
    datasets: tuple = key(("ferplus",), choices=DATASETS, items="[1, 2]")   # joint training set, one class order
    label_mode: str = key("majority", choices=LABEL_MODES)  # majority | probability | crossentropy | multi_target
    votes: str = key("label", choices=("label", "fer2013new"))  # FER+ votes: label.csv or fer2013new.csv
    val: str = key("ferplus", choices=DATASETS)   # dataset whose validation split drives the LR rule and
                                                  # best.safetensors
    affectnet_cap: int = key(15000, "[0, inf)")   # per-class cap on AffectNet training images (the paper's 88,021);
                                                  # 0: none
    skip_bad: bool = False
    limit: int = key(0, "[0, inf)")               # >0: use only this many training images (smoke tests)
    val_limit: int = key(0, "[0, inf)")           # >0: validate on only this many images (0: the whole split)
    balance: float = key(0.0, "[0, 1]")           # class-balanced sampling: image weight n_class^-balance (0 = plain
                                                  # shuffling, 0.5 = square-root, 1 = every class equally often)


@dataclass(frozen=True)
class Optim:
    lr: float = key(0.01, "(0, inf)")
    momentum: float = key(0.9, "[0, 1)")
    nesterov: bool = False
    weight_decay: float = key(5e-4, "[0, inf)")
    batch_size: int = key(64, "[1, inf)")
    epochs: int = key(10, "[0, inf)")             # total; with DSD enabled it is dense + sparse + redense
    schedule: str = key("plateau", choices=("plateau", "cosine", "constant"))  # plateau: the paper's rule
    plateau_patience: int = key(10, "[0, inf)")   # divide by 10 when val error has not improved for more than N epochs
    lr_floor: float = key(1e-5, "[0, inf)")
    warmup_epochs: int = key(0, "[0, inf)")       # cosine only
    label_smoothing: float = key(0.0, "[0, 1)")
    ema: float = key(0.0, "[0, 1)")               # >0: decay of a moving average of the weights (e.g. 0.998), which
                                                  # is what is validated, chosen as best and saved; 0 = the weights
                                                  # as trained


@dataclass(frozen=True)
class Loss:
    logit_adjust: float = key(0.0, "[0, inf)")    # tau of the logit-adjusted loss (Menon et al. 2021); 0 = plain CE
    supcon: float = key(0.0, "[0, inf)")          # weight of a supervised contrastive term on the representation
                                                  # (the last layer's input; Khosla et al. 2020): faces of one
                                                  # expression pulled together across people; 0 = off
    supcon_temperature: float = key(0.1, "(0, inf)")


@dataclass(frozen=True)
class DSD:
    enabled: bool = False
    dense: int = key(0, "[0, inf)")               # epochs of the first dense phase
    sparse: int = key(0, "[0, inf)")              # epochs of the sparse phase (masks re-computed after every epoch)
    redense: int = key(0, "[0, inf)")             # epochs of the final dense phase
    sparsity: tuple = key((0.2, 0.5), "[0, 1)", items="[2, inf)")  # [second conv, last conv], linear in between,
                                                                   # or one per conv layer; conv1 never pruned


@dataclass(frozen=True)
class Distill:
    teacher: str = ""                             # a model, or "a+b+..." (ensemble)
    weight: float = key(0.0, "[0, 1]")            # loss = (1 - weight) * CE + weight * distillation
    temperature: float = key(4.0, "(0, inf)")


@dataclass(frozen=True)
class Recipe:
    name: str = ""
    description: str = ""
    model: str = "vrfer-cnn"
    classes: str | tuple = key("", check=_class_set_value)  # "" = the model's own (FER+'s 8 for an architecture,
                                                  # init_from's for stage 2), a class set's name (vrfer.classes:
                                                  # "ferplus8", ...) or a list of class names
    input_mode: str = key("full", choices=_input_modes)   # full | upper-occluded | visible-half
    occlusion: float = key(0.5, "[0, 1)")         # fraction of rows hidden (upper-occluded / visible-half)
    image_size: int = key(0, "[0, 1024]")         # 0 = the model's own crop size
    seed: int = key(0, "[0, 4294967295]")         # numpy's seeds are unsigned 32-bit
    init_from: str = ""                           # run folder or .safetensors to start from (stage 2 <- stage 1)
    backbone_weights: str = ""                    # pretrained backbone file (vgg-face.mat, *_dag.pth, ...) for stage 1
    amp: str = key("off", choices=("auto", "bf16", "off"))  # bfloat16 autocast; auto: on a GPU, and on a CPU whose
                                                  # flags say it computes bf16 natively (AMX, AVX512_BF16). Off by
                                                  # default: float32 answers do not depend on the CPU, and bf16 is
                                                  # not faster for every model (benchmarks/bench_recipes.py --bf16)
    data: Data = field(default_factory=Data)
    optim: Optim = field(default_factory=Optim)
    augment: Augment = field(default_factory=Augment)
    loss: Loss = field(default_factory=Loss)
    dsd: DSD = field(default_factory=DSD)
    distill: Distill = field(default_factory=Distill)
    origin: str = field(default="", metadata={"internal": True})  # where it was read from; recorded as "_origin"

    @property
    def total_epochs(self) -> int:
        d = self.dsd
        return d.dense + d.sparse + d.redense if d.enabled else self.optim.epochs

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class set the recipe names, or None: the model's own."""
        return class_set(self.classes) if self.classes else None

    def to_dict(self) -> dict:
        """The recipe as plain data (tuples as lists): what a run records, and what from_record reads back."""
        out = _plain(self)
        if self.origin:
            out["_origin"] = self.origin
        return out


def _plain(obj):
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj) if not f.metadata.get("internal")}
    return list(obj) if isinstance(obj, tuple) else obj


def _keys(cls) -> dict:
    return {f.name: f for f in fields(cls) if not f.metadata.get("internal")}


def _section(f):
    """The section class of a table's field (Data, Optim, ...), or None for a key."""
    return f.default_factory if is_dataclass(f.default_factory) else None


def _check(over: dict, cls=Recipe, prefix: str = "") -> None:
    """Every key of `over` is known and its value is of the key's type and within its range."""
    known = _keys(cls)
    for name, value in over.items():
        where = f"{prefix}{name}"
        if name.startswith("_") and not prefix:   # what vrfer records beside the keys (_origin)
            continue
        if name not in known:
            raise VrferError(f"recipe: unknown key {where!r} (known: {', '.join(sorted(known))})")
        section = _section(known[name])
        if section is not None:
            if not isinstance(value, dict):
                raise VrferError(f"recipe: {where!r} must be a table, got {type(value).__name__}")
            _check(value, section, where + ".")
        else:
            Key.of(known[name]).check(where, value)


def _merge(base, over: dict):
    """`base` (a Recipe or section) with the checked values of `over` (a nested dict) in place of its own."""
    changes = {}
    for name, v in over.items():
        if name.startswith("_"):
            continue
        now = getattr(base, name)
        if is_dataclass(now):
            changes[name] = _merge(now, v)
        elif isinstance(now, float) and not isinstance(v, bool):
            changes[name] = float(v)
        else:
            changes[name] = tuple(v) if isinstance(v, list) else v
    return replace(base, **changes)


# ---------------------------------------------------------------- reading recipes

def recipe_names() -> list[str]:
    folder = resources.files("vrfer.training.recipes")
    return sorted(e.name[:-5] for e in folder.iterdir() if e.name.endswith(".toml"))


def read_toml(name_or_file: str) -> tuple[dict, str]:
    """A recipe's TOML as a dict, and where it came from ("vrfer:NAME" for a shipped one)."""
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
    name, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = name.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_recipe(name_or_file: str, overrides: list[str] | tuple = ()) -> Recipe:
    data, origin = read_toml(name_or_file)
    _check(data)
    recipe = _merge(Recipe(), data)
    for text in overrides:
        o = parse_override(text)
        _check(o)
        recipe = _merge(recipe, o)
        if "epochs" in o.get("optim", {}) and recipe.dsd.enabled:
            raise VrferError(f"--set {text}: 'optim.epochs' has no effect in a recipe with dsd.enabled; its "
                             "epochs are dsd.dense + dsd.sparse + dsd.redense")
    recipe = replace(recipe, name=recipe.name or Path(origin).stem.replace("vrfer:", ""), origin=origin)
    validate(recipe)
    return recipe


def from_dict(over: dict) -> Recipe:
    """A recipe from a plain dict (the Python API), validated like a file."""
    _check(over)
    recipe = replace(_merge(Recipe(), over), origin="api")
    validate(recipe)
    return recipe


def validate(r: Recipe) -> None:
    """The whole recipe against its declaration, and what relates keys to each other."""
    _check(r.to_dict())
    if len(set(r.data.datasets)) < len(r.data.datasets):
        raise VrferError(f"recipe: 'data.datasets' names a dataset twice: {list(r.data.datasets)}")
    lo, hi = r.augment.headset_edge
    if lo > hi:
        raise VrferError(f"recipe: 'augment.headset_edge' must be [low, high] with low <= high, got {[lo, hi]}")
    if r.augment.mixup and r.data.label_mode not in ("majority", "crossentropy"):
        raise VrferError(f"recipe: 'augment.mixup' blends label distributions; it takes data.label_mode 'majority' or "
                         f"'crossentropy', not {r.data.label_mode!r}")
    if r.augment.mixup and r.loss.supcon:
        raise VrferError("recipe: 'augment.mixup' and 'loss.supcon' cannot be combined (a blended face has no one "
                         "expression to be pulled towards)")
    if r.total_epochs < 1:
        name = "dsd.dense + dsd.sparse + dsd.redense" if r.dsd.enabled else "optim.epochs"
        raise VrferError(f"recipe: {name!r} must add up to at least 1 epoch, got {r.total_epochs}")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------- what a run recorded

def from_record(recorded: dict, where: str = "recipe") -> Recipe:
    """A recipe as a run recorded it (Recipe.to_dict). Keys added to vrfer since it was recorded take their
    defaults (which keep the old behaviour), so a run started by an older vrfer still resumes."""
    try:
        _check(recorded)
    except VrferError as e:
        raise VrferError(f"{where}: {e}") from None
    return replace(_merge(Recipe(), recorded), origin=recorded.get("_origin", ""))


def load_recorded(run_dir) -> Recipe:
    """The recipe a training run recorded in its folder (recipe.json): what it ran with."""
    path = Path(run_dir) / "recipe.json"
    if not path.is_file():
        raise VrferError(f"{run_dir}: nothing to resume (no recipe.json: not a training run folder)")
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VrferError(f"{path}: cannot read the recorded recipe ({e})") from None
    if not isinstance(recorded, dict) or "data" not in recorded:
        raise VrferError(f"{path}: not a vrfer recipe")
    return from_record(recorded, str(path))


def changed_keys(recipe: Recipe, overrides: list[str] | tuple) -> list[tuple[str, object, object]]:
    """(key, recorded value, asked value) for every KEY=VALUE override that would change `recipe`."""
    out = []
    flat = flatten(recipe.to_dict())
    for text in overrides:
        o = parse_override(text)
        _check(o)
        asked = flatten(_merge(recipe, o).to_dict())
        for name in flatten(o):
            if flat.get(name) != asked[name]:
                out.append((name, flat.get(name), asked[name]))
    return out
