"""vrfer train: one training loop for every model; recipes are TOML files, any key overridable.

    vrfer train --recipe cpu-full --data-root ferplus=DIR --out runs/cpu-full
    vrfer train --out runs/cpu-full --data-root ferplus=DIR --resume      # the run's own recipe
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..datasets import DATASETS
from ..errors import VrferError


def add_parser(sub) -> None:
    t = sub.add_parser(
        "train", help="train a model from a recipe (resumable)",
        description="Train a model from a recipe (a shipped name such as cpu-full, or a .toml file). Each epoch "
                    "writes metrics.jsonl, curves.png, an atomic checkpoint.pt and best.safetensors into --out; "
                    "the run's recipe (with every override applied) is recorded in --out/recipe.json. "
                    "With --resume the recorded recipe is used: overrides need not be retyped, and one that "
                    "differs from the record is an error naming the key.")
    t.add_argument("--recipe", help="shipped recipe name (cpu-full, cpu-lower, vggface-stage1/2, vggf-stage1/2) "
                                    "or a .toml file; required unless --resume")
    t.add_argument("--data-root", action="append", metavar="[DATASET=]DIR",
                   help="dataset root, e.g. ferplus=../shared/data/ferplus (repeatable; a bare DIR serves "
                        "every dataset the recipe reads)")
    t.add_argument("--out", required=True, help="run folder (checkpoint, metrics, curves, weights)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its recorded recipe")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. optim.lr=0.01 (repeatable)")
    t.add_argument("--seed", type=int, help="random seed (default: the recipe's, 0 in the shipped ones)")
    t.add_argument("--init-from", help="run folder or .safetensors to start from (default: the recipe's "
                                       "init_from; the model then is that file's architecture)")
    t.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images and malformed label rows and count them (recipe key "
                        "data.skip_bad; default: stop at the first, naming it)")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch line")
    t.set_defaults(fn=run)


def data_roots(values: list[str] | None, datasets: list[str]) -> dict[str, str]:
    """--data-root values -> {dataset: dir}; a bare DIR serves every dataset not named otherwise."""
    roots: dict[str, str] = {}
    for v in values or []:
        name = v.split("=", 1)[0] if "=" in v else ""
        if name in DATASETS:
            roots[name] = v.split("=", 1)[1]
        elif re.fullmatch(r"[A-Za-z][\w+-]*", name) and not Path(v).exists():   # NAME=DIR, not a folder with '='
            raise VrferError(f"--data-root {v}: unknown data set {name!r}; known: {', '.join(DATASETS)}")
        else:
            for ds in datasets:
                roots.setdefault(ds, v)
    return roots


def cli_overrides(a) -> list[str]:
    """Every recipe change asked for on the command line, as KEY=VALUE texts."""
    over = list(a.set or [])
    if a.seed is not None:
        over.append(f"seed={a.seed}")
    if a.init_from is not None:
        over.append(f"init_from={json.dumps(a.init_from)}")
    if a.skip_bad:
        over.append("data.skip_bad=true")
    return over


def recorded_recipe(a):
    """The recipe a run in --out started with; the command line may repeat it but not change it."""
    from ..training.recipe import changed_keys, load_recorded
    recipe = load_recorded(Path(a.out))
    if a.recipe is not None and a.recipe not in (recipe.name, recipe.origin):
        raise VrferError(f"--recipe {a.recipe}: the run in {a.out} was started with recipe {recipe.name!r}; "
                         "--resume continues it with its recorded recipe (--recipe may be left out)")
    changed = changed_keys(recipe, cli_overrides(a))
    if changed:
        key, was, now = changed[0]
        raise VrferError(f"{key}: the run in {a.out} was started with {key}={was!r}, not {now!r}; a resumed run "
                         "keeps its recorded recipe (start a new run with another --out to change it)")
    return recipe


def run(a) -> int:
    from ..outputs import output_dir
    from ..training.recipe import load_recipe
    from ..training.trainer import train
    if a.resume:
        recipe = recorded_recipe(a)
    else:
        if a.recipe is None:
            raise VrferError("--recipe is required (unless --resume continues a run)")
        recipe = load_recipe(a.recipe, cli_overrides(a))
    output_dir(a.out, create=False)
    needed = list(dict.fromkeys([*recipe.data.datasets, recipe.data.val]))
    run_dir = train(recipe, data_roots(a.data_root, needed), a.out, resume=a.resume, quiet=a.quiet)
    print(f"run finished: {run_dir}")
    return 0
