"""checkpoint.pt: all a run needs to go on after its last finished epoch exactly as if never stopped (model,
optimiser, scheduler, DSD masks, weight average, RNG state, metrics, the recipe it started with), written
atomically, and read back on --resume."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import VrferError
from . import dsd
from .recipe import flatten, from_record

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written checkpoint


def load_checkpoint_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else ""
        why = why if len(why) > 20 else f"{type(e).__name__}{': ' + why if why else ''}"  # a bare number says nothing
        raise VrferError(f"{path}: cannot read checkpoint: damaged or not a vrfer checkpoint ({why[:200]}); "
                         "the run can only start again, without --resume") from None


def checkpoint_to_resume(out: Path, resume: bool) -> dict | None:
    """The checkpoint of the run in `out` when resuming (else None): read before any data, so that a damaged
    one fails at once."""
    path = out / CHECKPOINT
    if resume and not path.is_file():
        raise VrferError(f"{path}: nothing to resume (no checkpoint in the run folder: it stopped before its "
                         "first epoch ended); start it again without --resume")
    if not resume and path.is_file():
        raise VrferError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    return load_checkpoint_state(path) if resume else None


def checkpoint(run) -> dict:
    """The checkpoint of a run (vrfer.training.trainer.Run) after its last finished epoch."""
    m, ema = run.model, run.setup.ema
    return {"epoch": run.epochs_done, "recipe": run.recipe.to_dict(), "model": m.state_dict(),
            "masks": dsd.get_masks(m), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
            "rng_cpu": torch.get_rng_state(), "best_acc": run.best_acc, "metrics": run.metrics,
            **({"ema": ema.state_dict()} if ema is not None else {})}


def restore(run, state: dict) -> None:
    """Continue `run` from its checkpoint (`checkpoint`), which must have been started with the same recipe."""
    path = run.out / CHECKPOINT
    started = from_record(state["recipe"], str(path))
    if started != run.recipe:
        was, now = flatten(started.to_dict()), flatten(run.recipe.to_dict())
        changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        raise VrferError(f"{path}: the recipe differs from the one the run started with "
                         f"(keys: {', '.join(changed)}); resume with the same recipe and overrides")
    if state["masks"]:
        dsd.attach_masks(run.model, state["masks"])  # before the weights: a pruned model's keys are weight_orig/mask
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if run.setup.ema is not None:
        run.setup.ema.load_state_dict(state["ema"])
    run.epochs_done, run.best_acc, run.metrics = state["epoch"], state["best_acc"], state["metrics"]
    if run.log:
        run.log(f"resuming {run.out} after epoch {run.epochs_done} of {run.recipe.total_epochs} (best validation "
                f"accuracy so far {100 * run.best_acc:.2f}%)")
