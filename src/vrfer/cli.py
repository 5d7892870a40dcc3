"""The `vrfer` command line. Every user-fixable problem ends as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import VrferError


def _roots(values: list[str] | None, datasets: list[str]) -> dict[str, str]:
    roots: dict[str, str] = {}
    for v in values or []:
        if "=" in v and v.split("=", 1)[0] in ("ferplus", "affectnet"):
            k, p = v.split("=", 1)
            roots[k] = p
        else:
            for ds in datasets:
                roots.setdefault(ds, v)
    return roots


def cmd_train(a) -> int:
    from .training.recipe import load_recipe
    from .training.trainer import train
    recipe = load_recipe(a.recipe, a.set or [])
    if a.seed is not None:
        recipe["seed"] = a.seed
    if a.init_from is not None:
        recipe["init_from"] = a.init_from
    needed = list(dict.fromkeys(recipe["data"]["datasets"] + [recipe["data"]["val"]]))
    run = train(recipe, _roots(a.data_root, needed), a.out, resume=a.resume, quiet=a.quiet)
    print(f"run finished: {run}")
    return 0


def cmd_data_summary(a) -> int:
    if a.dataset == "ferplus":
        from .datasets.ferplus import summary
        out = summary(a.root, a.mode, a.votes, a.skip_bad)
    else:
        from .datasets.affectnet import summary
        out = summary(a.root, cap=a.cap, seed=a.seed, skip_bad=a.skip_bad)
    if a.json:
        print(json.dumps(out))
    else:
        for split, d in out.items():
            cls = ", ".join(f"{k} {v}" for k, v in d["classes"].items())
            print(f"{split:>10}: {d['count']:>7} images ({cls})")
            for k, v in d.get("skipped", {}).items():
                print(f"{'':>12}skipped {v}: {k}")
            for k, v in d.get("dropped", {}).items():
                print(f"{'':>12}dropped {v}: {k}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vrfer", description="Facial expressions of people wearing VR headsets "
                                "(the model sees the lower half of the face).")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a recipe (resumable)")
    t.add_argument("--recipe", required=True, help="shipped recipe name or a .toml file")
    t.add_argument("--data-root", action="append", metavar="[DATASET=]DIR",
                   help="dataset root, e.g. ferplus=../shared/data/ferplus (repeatable)")
    t.add_argument("--out", required=True, help="run folder (checkpoint, metrics, curves, weights)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. optim.lr=0.01")
    t.add_argument("--seed", type=int)
    t.add_argument("--init-from", help="run folder or .safetensors to start from (overrides the recipe)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(fn=cmd_train)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("summary", help="counts per split and class")
    s.add_argument("--dataset", choices=["ferplus", "affectnet"], required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--votes", choices=["label", "fer2013new"], default="label")
    s.add_argument("--mode", choices=["majority", "probability", "crossentropy", "multi_target"], default="majority")
    s.add_argument("--cap", type=int, default=15000, help="AffectNet per-class training cap")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--skip-bad", action="store_true", help="skip bad items and report how many and why")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_data_summary)

    for mod in _command_modules():
        mod.add_parser(sub)
    return p


def _command_modules():
    import importlib
    import pkgutil

    from . import commands
    return [importlib.import_module(f"vrfer.commands.{m.name}")
            for m in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name)]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except VrferError as e:
        print(f"vrfer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vrfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
