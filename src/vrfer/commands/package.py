"""vrfer package: turn a training run's best weights into a named model that ships inside vrfer."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("package", help="save a run's best weights as a named, bundled model (float16 safetensors)",
                       description="Turn a training run's best weights into a named model that ships inside vrfer "
                                   "(float16 safetensors with its config, training data and results in the "
                                   "metadata); `vrfer models` lists it and every command takes its name.")
    p.add_argument("run", help="training run folder (its best.safetensors) or a .safetensors file")
    p.add_argument("--name", required=True, help="registry name, e.g. vrfer-lower")
    p.add_argument("--trained-on", required=True, help="what it was trained on, shown by `vrfer models`")
    p.add_argument("--description", default="", help="one line shown by `vrfer models` (default: the run's)")
    p.add_argument("--result", action="append", default=[], metavar="KEY=VALUE",
                   help="a measured result to carry in the file's metadata (repeatable; default: none)")
    p.add_argument("--out", help="output file (default: vrfer/pretrained/NAME.safetensors in the package)")
    p.add_argument("--force", action="store_true",
                   help="replace a model of that name already in the package (e.g. re-shipping vrfer-lower)")
    p.set_defaults(fn=run)


def run(a) -> int:
    from importlib import resources

    from ..errors import VrferError
    from ..models.registry import load_checkpoint, save_model
    from ..outputs import output_file
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", a.name):
        raise VrferError(f"--name {a.name!r}: a model name is letters, digits, '.', '_' and '-' (e.g. vrfer-lower), "
                         "no path")
    for kv in a.result:
        if "=" not in kv:
            raise VrferError(f"--result {kv!r}: expected KEY=VALUE, e.g. ferplus_test_acc=0.8193")
    model = load_checkpoint(Path(a.run))
    fname = f"{a.name}.safetensors"
    extra = dict(model.cfg.extra)
    recipe = Path(a.run) / "recipe.json"
    if recipe.is_file():
        from ..training.recipe import load_recorded
        r = load_recorded(Path(a.run))
        extra["recipe"] = {k: r[k] for k in ("name", "seed", "input_mode", "model") if k in r}
    extra["results"] = dict(kv.split("=", 1) for kv in a.result)
    cfg = replace(model.cfg, name=a.name, weights=fname, trained_on=a.trained_on,
                  description=a.description or model.cfg.description, extra=extra)
    bundled = Path(str(resources.files("vrfer.pretrained"))) / fname
    if not a.out and bundled.exists() and not a.force:
        # the shipped models live here: replacing one changes every command's default answers
        raise VrferError(f"{bundled}: a model named {a.name!r} is already in the package; add --force to replace it "
                         "or --out to write elsewhere")
    out = output_file(a.out or bundled)
    save_model(model, out, cfg, half=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
