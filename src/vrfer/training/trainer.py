"""The one training loop for every model and recipe (after torchvision's references/classification).

`train` reads top to bottom: model and data, the `Setup` (class-prior offsets, class-balanced sampling,
weight average), optimiser and schedule (optim.py), `restore` on resume (checkpoint.py), then per epoch
`train_one_epoch` and `end_epoch`: validation (`validate`), the best weights, an atomic checkpoint, metrics.jsonl
and curves.png (records.py). Each epoch's shuffling, augmentation and dropout are seeded from (seed, epoch)
(data.py), so a run resumed from its last checkpoint reaches the same weights as one that was never interrupted.
Under `torchrun` it trains with DistributedDataParallel (device.py).
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..datasets.base import FaceSet
from ..errors import VrferError
from ..inference.torch_backend import predict_proba
from ..metrics import metrics
from . import dsd
from .checkpoint import CHECKPOINT, checkpoint, checkpoint_to_resume, restore, save_checkpoint
from .data import balanced_weights, class_prior, epoch_batches, epoch_generator, epoch_order, load_data
from .device import autocast_bf16, barrier, ddp, dist_setup
from .ema import WeightEMA
from .loss import Criterion, load_teachers
from .model import PRETRAINED_ARCHS, prior_in_bias, save_model_plain, starting_model
from .optim import make_optimizer, make_scheduler
from .recipe import Recipe
from .records import plot_curves, write_metrics


def diverged(recipe: Recipe, what: str):
    """Stop a run that diverged: it would otherwise go on and save NaN weights as its best model. The
    checkpoint of the last finished epoch stays as it was."""
    hint = (" or start from pretrained weights (backbone_weights)"
            if recipe.model in PRETRAINED_ARCHS and not recipe.backbone_weights else "")
    raise VrferError(f"training diverged: {what}; lower optim.lr{hint}")


def train_one_epoch(net, opt, sched, batches, criterion, g, device, amp: bool, ema=None, bar=None, *,
                    stop: Callable[[str], None]) -> tuple[float, int]:
    """One pass over `batches`; returns (summed loss, faces seen). sched: a schedule to step after every
    step, or None; amp: bf16 autocast; ema: a WeightEMA to update; stop(what): called on a non-finite loss."""
    net.train()
    loss_sum, n_seen = 0.0, 0
    for step, (x, y, t, x_teacher) in enumerate(batches, start=1):
        x, y, t = x.to(device, non_blocking=True), y.to(device), t.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = criterion(net(x), y, t, x_teacher, g)
        if not torch.isfinite(loss):
            stop(f"the loss is {loss.item()} at step {step} of this epoch")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if ema is not None:
            ema.update(net.module if hasattr(net, "module") else net)
        loss_sum += loss.item() * len(y)
        n_seen += len(y)
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / n_seen:.3f}", lr=f"{opt.param_groups[0]['lr']:.2g}")
    return loss_sum, n_seen


def validate(model, val_set: FaceSet, offset=None) -> dict:
    """Validation accuracy and mean per-class recall (vrfer.metrics) and loss, with the prior-calibrated
    logits (`offset`: what a logit-adjusted or class-balanced run adds to its bias to get them)."""
    with prior_in_bias(model, offset):
        probs = predict_proba(model, val_set.images, batch_size=512)
    m = metrics(val_set.labels, probs.argmax(1), val_set.classes)
    nll = -np.log(np.clip(probs[np.arange(len(probs)), val_set.labels], 1e-7, None))
    return {"val_acc": m["accuracy"], "val_mean_recall": m["mean_class_recall"], "val_loss": float(nll.mean())}


class Setup:
    """What a run adds around plain SGD, fixed at its start: the class prior's offsets (logit-adjusted loss,
    class-balanced sampling) and the moving average of the weights (optim.ema)."""

    def __init__(self, recipe: Recipe, train_set: FaceSet, model):
        prior = class_prior(train_set)
        # every file this run writes carries the training prior (for --prior at inference)
        model.cfg = replace(model.cfg, extra={**model.cfg.extra, "train_prior": [round(float(v), 6) for v in prior]})
        log_prior = torch.log(torch.as_tensor(prior, dtype=torch.float32).clamp_min(1e-4))
        tau, q = recipe.loss.logit_adjust, recipe.data.balance
        self.la_offset = tau * log_prior if tau else None  # added to the logits in the loss
        self.sample_weights = torch.from_numpy(balanced_weights(train_set.labels, q)) if q else None
        # Sampling by n^-q trains on a prior ~ prior^(1-q): adding q * log prior gives back ordinary,
        # prior-calibrated logits, so validation and every saved file mean the same as a plain run's.
        self.post_offset = (tau + q) * log_prior if (tau or q) else None
        # With optim.ema the moving average is the model: validated, chosen as best and saved (an unpruned copy
        # holds it); the trained weights, their masks and the optimiser go on as without it.
        decay = recipe.optim.ema
        self.ema = WeightEMA(model, decay) if decay else None
        self.averaged = copy.deepcopy(model) if decay else None

    def kept(self, model):
        """The model that is validated, may be chosen and is saved: the moving average, or `model` itself."""
        return self.ema.copy_to(self.averaged) if self.ema is not None else model


@dataclass
class Run:
    """A run between epochs: what it trains, where it writes, and the record its checkpoint keeps."""
    out: Path
    recipe: Recipe
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    setup: Setup
    val_set: FaceSet
    amp: bool                     # bf16 autocast
    main: bool                    # rank 0: the one that writes
    log: Callable | None          # where to say how it goes (None: silent)
    epochs_done: int = 0
    best_acc: float = -1.0
    metrics: list = field(default_factory=list)


def end_epoch(run: Run, epoch: int, phase: str, train_loss: float, n_images: int, t0: float) -> None:
    """After training epoch `epoch` (0-based): validate, step a plateau schedule, record the epoch and choose
    the best model. Rank 0 saves it, the checkpoint, metrics.jsonl and curves.png, and says how it went."""
    setup, out = run.setup, run.out
    val = validate(run.model, run.val_set, setup.post_offset)
    keep = setup.kept(run.model)
    if keep is not run.model:  # the average is what counts; the trained weights' scores go beside it
        val = {**validate(keep, run.val_set, setup.post_offset), "val_acc_trained": val["val_acc"],
               "val_mean_recall_trained": val["val_mean_recall"]}
    lr = run.opt.param_groups[0]["lr"]
    if run.recipe.optim.schedule == "plateau":
        run.sched.step(1.0 - val["val_acc"])
    row = {"epoch": epoch + 1, "phase": phase, "train_loss": train_loss, **val, "lr": lr, "bf16": run.amp,
           "time_s": round(time.time() - t0, 1), "img_per_s": round(n_images / (time.time() - t0), 1),
           "sparsity": {k: round(v, 4) for k, v in dsd.measured_sparsity(run.model).items()}}
    run.metrics.append(row)
    best = val["val_acc"] > run.best_acc
    run.best_acc, run.epochs_done = max(run.best_acc, val["val_acc"]), epoch + 1
    if not run.main:
        return
    if best:
        with prior_in_bias(keep, setup.post_offset):
            save_model_plain(keep, out / "best.safetensors")
    save_checkpoint(out / CHECKPOINT, checkpoint(run))
    write_metrics(run.metrics, out / "metrics.jsonl")
    plot_curves(run.metrics, out / "curves.png")
    if run.log:
        run.log(f"epoch {epoch + 1}/{run.recipe.total_epochs} [{phase}] train_loss {train_loss:.4f} "
                f"val_acc {100 * val['val_acc']:.2f}% recall {val['val_mean_recall']:.3f} "
                f"val_loss {val['val_loss']:.4f} lr {lr:.2g} "
                f"{row['time_s']}s ({row['img_per_s']} img/s){' *best*' if best else ''}")


def train(recipe: Recipe, roots: dict[str, str], out_dir, resume: bool = False, quiet: bool = False) -> Path:
    """Train `recipe` into `out_dir`; returns the run folder. resume=True continues the run there
    from its last checkpoint, with the recipe it recorded (a different `recipe` is an error)."""
    out = Path(out_dir)
    state = checkpoint_to_resume(out, resume)
    world, rank, device = dist_setup()
    log = (lambda line: print(line, flush=True)) if rank == 0 and not quiet else None
    torch.manual_seed(recipe.seed)  # initial weights follow the seed too (same on every DDP rank)
    model = starting_model(recipe, out, resume, log)
    recipe = replace(recipe, model=model.cfg.arch)   # as it runs: a model started from init_from is that file's
    rates = dsd.layer_sparsity_targets(model, recipe.dsd.sparsity) if recipe.dsd.enabled else {}  # before the data
    train_set, val_set = load_data(recipe, roots, quiet=log is None, classes=model.cfg.classes)
    out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    setup = Setup(recipe, train_set, model)
    o, epochs = recipe.optim, recipe.total_epochs
    batch = max(1, o.batch_size // world)  # per rank
    steps = len(train_set) // (batch * world) or 1
    opt = make_optimizer(model, o)
    sched = make_scheduler(opt, o, epochs, steps)
    run = Run(out, recipe, model, opt, sched, setup, val_set, amp=autocast_bf16(recipe.amp, device),
              main=rank == 0, log=log)
    if resume:
        restore(run, state)
    elif run.main:
        (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))

    teacher = load_teachers(recipe.distill.teacher, device, model.cfg.classes) if recipe.distill.weight > 0 else None
    criterion = Criterion(recipe, setup.la_offset, teacher, model)
    net = ddp(model, world, device)
    step_sched = None if o.schedule == "plateau" else sched  # plateau steps once an epoch, in end_epoch
    for epoch in range(run.epochs_done, epochs):
        phase = dsd.enter_phase(model, epoch, recipe.dsd, rates)
        g = epoch_generator(recipe.seed, epoch)
        order = epoch_order(len(train_set), steps, batch * world, setup.sample_weights, g)[rank::world]
        batches = epoch_batches(train_set, order, steps, batch, model.cfg, recipe.augment, g,
                                teacher[0].cfg if teacher else None)
        t0 = time.time()
        with tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs} [{phase}]", disable=log is None,
                  mininterval=2.0, leave=False, dynamic_ncols=True) as bar:
            loss_sum, n_seen = train_one_epoch(net, opt, step_sched, batches, criterion, g, device, run.amp,
                                               setup.ema, bar, stop=lambda what: diverged(recipe, what))
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            diverged(recipe, f"the weights are not finite after epoch {epoch + 1}")
        if phase == "sparse":
            dsd.apply_masks(model, rates)  # the paper re-prunes after every epoch of the sparse phase
        end_epoch(run, epoch, phase, loss_sum / max(n_seen, 1), n_seen * world, t0)
    if run.main:
        last = setup.kept(model)
        with prior_in_bias(last, setup.post_offset):
            save_model_plain(last, out / "final.safetensors")
    barrier(world)
    return out
