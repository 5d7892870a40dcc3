"""Table 1 of the paper on FER+: train {full, lower half} x test {full, lower half}.

Each model family has a stage-1 recipe (full faces) and a stage-2 recipe (lower half, started from
stage 1). Finished runs are reused, unfinished ones resumed, missing ones trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from .datasets.ferplus import load_ferplus
from .errors import VrferError
from .evaluate import confusion_png, evaluate
from .models import create_model
from .training.checkpoint import CHECKPOINT
from .training.recipe import Recipe, flatten, load_recipe, load_recorded
from .training.trainer import train

FAMILIES = {  # model -> (stage-1 recipe, stage-2 recipe)
    "vrfer-cnn": ("cpu-full", "cpu-lower"),
    "vgg-face": ("vggface-stage1", "vggface-stage2"),
    "vgg-f": ("vggf-stage1", "vggf-stage2"),
}

# The paper's Table 1, FER+ column (accuracy %): (train, test) -> {model: value}
PAPER_FERPLUS = {
    ("full", "full"): {"VGG-f": 85.05, "VGG-face": 84.79, "VGG-13 (Barsoum et al.)": 84.99},
    ("full", "lower half"): {"VGG-f": 70.00, "VGG-face": 68.89},
    ("lower half", "lower half"): {"VGG-f": 78.23, "VGG-face": 82.28},
}


def ensure_run(recipe_name: str, roots: dict, run_dir: Path, overrides: list[str], init_from: str | None = None,
               quiet: bool = False) -> Path:
    """Reuse a finished run, resume an unfinished one, or train it. A finished run is reused only when it
    was trained with this very recipe and overrides: a smoke test's run must never fill a real table."""
    recipe = load_recipe(recipe_name, overrides)
    if init_from:
        recipe = replace(recipe, init_from=init_from)
    if (run_dir / "final.safetensors").is_file():
        changed = recipe_changes(load_recorded(run_dir), recipe)
        if changed:
            raise VrferError(f"{run_dir}: a finished run trained with another recipe (differs in "
                             f"{', '.join(changed)}); give another --runs folder, or the same --set as it had")
        return run_dir
    return train(recipe, roots, run_dir, resume=(run_dir / CHECKPOINT).is_file(), quiet=quiet)


def recipe_changes(recorded: Recipe, asked: Recipe) -> list[str]:
    """The dotted keys in which a run's recorded recipe differs from the asked one. `model` is left out (a
    run records the architecture it ran, which an init_from file decides), and init_from compares as the
    file it names."""

    def norm(r: Recipe) -> dict:
        flat = {k: v for k, v in flatten(r.to_dict()).items() if k != "model"}
        if flat.get("init_from"):
            flat["init_from"] = str(Path(flat["init_from"]).resolve())
        return flat
    a, b = norm(recorded), norm(asked)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def reproduce(root: str, families: list[str], runs: Path, out: Path, affectnet_root: str | None = None,
              overrides: list[str] = (), tta_flip: bool = False, quiet: bool = False, skip_bad: bool = False) -> dict:
    for fam in families:
        if fam not in FAMILIES:
            raise VrferError(f"unknown model family {fam!r}; known: {', '.join(FAMILIES)}")
    roots = {"ferplus": root}
    overrides = list(overrides) + (["data.skip_bad=true"] if skip_bad else [])
    if affectnet_root:
        roots["affectnet"] = affectnet_root
    else:
        overrides.append('data.datasets=["ferplus"]')  # FER+ only (the paper adds AffectNet)
    for fam in families:  # a bad override fails now, not after the first stage has trained
        for name in FAMILIES[fam]:
            load_recipe(name, overrides)
    test = load_ferplus(root, "test", "majority", "label", skip_bad=skip_bad)
    out.mkdir(parents=True, exist_ok=True)
    results = {"data": {"dataset": "ferplus", "split": "test", "n": len(test), "fingerprint": test.fingerprint(),
                        "labels": "majority, label.csv votes"}, "overrides": overrides, "families": {}}
    for fam in families:
        s1, s2 = FAMILIES[fam]
        t0 = time.time()
        run1 = ensure_run(s1, roots, runs / s1, overrides, quiet=quiet)
        run2 = ensure_run(s2, roots, runs / s2, overrides, init_from=str(run1), quiet=quiet)
        cells = {}
        for train_name, run in (("full", run1), ("lower half", run2)):
            model = create_model(str(run / "best.safetensors"))
            for test_name, occ in (("full", "none"), ("lower half", "upper-half")):
                if train_name == "lower half" and test_name == "full" and model.cfg.input_mode == "visible-half":
                    continue  # a visible-half model never sees the upper face: same as the lower-half test
                r = evaluate(model, test, occ, tta_flip)
                png = confusion_png(r, out / f"confusion-{fam}-train_{train_name.replace(' ', '_')}-"
                                    f"test_{test_name.replace(' ', '_')}.png",
                                    f"{fam} trained on {train_name}, tested on {test_name} faces (FER+ test)")
                cells[f"{train_name} -> {test_name}"] = {k: r[k] for k in ("accuracy", "ci95", "n", "per_class",
                                                                             "mean_class_recall")}
                cells[f"{train_name} -> {test_name}"].update(checkpoint=str(run / "best.safetensors"),
                                                             confusion_png=str(png))
        eff = cells["lower half -> lower half"]["accuracy"] - cells["full -> lower half"]["accuracy"]
        results["families"][fam] = {"runs": [str(run1), str(run2)], "cells": cells, "effect_points": 100 * eff,
                                    "recipes": {s1: load_recorded(run1).to_dict(), s2: load_recorded(run2).to_dict()},
                                    "wall_s_this_call": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(markdown_table(results, tta_flip))
    return results


def markdown_table(results: dict, tta_flip: bool = False) -> str:
    lines = ["| model | train | test | FER+ accuracy (ours) | 95% CI | paper: VGG-f | paper: VGG-face |",
             "|---|---|---|---|---|---|---|"]
    for fam, r in results["families"].items():
        for key, c in r["cells"].items():
            tr, te = key.split(" -> ")
            paper = PAPER_FERPLUS.get((tr, te), {})
            lo, hi = c["ci95"]
            lines.append(f"| {fam} | {tr} | {te} | {100 * c['accuracy']:.2f}% | {100 * lo:.2f}-{100 * hi:.2f} | "
                         f"{paper.get('VGG-f', '-')} | {paper.get('VGG-face', '-')} |")
    lines.append("")
    for fam, r in results["families"].items():
        lines.append(f"{fam}: trained on lower half minus trained on full faces, both tested on the lower half: "
                     f"{r['effect_points']:+.2f} points (paper: VGG-f +8.23, VGG-face +13.39).")
    if results.get("overrides"):
        lines.append(f"\nRecipes changed by --set: {'; '.join(results['overrides'])}.")
    d = results["data"]
    lines.append(f"\nTest data: FER+ {d['split']} ({d['n']} faces, {d['labels']}), fingerprint {d['fingerprint']}"
                 f"{'; flip-averaged predictions' if tta_flip else ''}.")
    return "\n".join(lines) + "\n"
