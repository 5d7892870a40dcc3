"""The one training loop for every model and recipe (after torchvision's references/classification).

`train` reads top to bottom: model and data, the `Setup` (class-prior offsets, class-balanced sampling,
weight average), optimiser and schedule (`make_optimizer`, `make_scheduler`), `restore` on resume, then per
epoch `train_one_epoch` and `end_epoch`: validation (`validate`), the best weights, an atomic checkpoint
(`checkpoint`: model, optimiser, scheduler, DSD masks, RNG state, metrics), metrics.jsonl and curves.png.
Each epoch's shuffling, augmentation and dropout are seeded from (seed, epoch), so a run resumed from
its last checkpoint reaches the same weights as one that was never interrupted.
Under `torchrun` it trains with DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..datasets import load_split
from ..datasets.base import FaceSet, concat
from ..errors import VrferError
from ..evaluate import metrics
from ..inference.torch_backend import predict_proba
from ..inference.loader import resolve
from ..models.registry import create_model, load_checkpoint, save_model
from ..inference.preprocess import Augment, prepare
from . import dsd
from .ema import WeightEMA
from .recipe import total_epochs, with_defaults

CHECKPOINT = "checkpoint.pt"


# ---------------------------------------------------------------- data

def load_data(recipe: dict, roots: dict[str, str], quiet: bool = True) -> tuple[FaceSet, FaceSet]:
    """The recipe's joint training set and its validation set, from the given dataset roots.
    data.limit / data.val_limit keep a seeded sample of each (said on stdout unless quiet)."""
    d = recipe["data"]
    for ds in set(d["datasets"]) | {d["val"]}:
        if ds not in roots:
            raise VrferError(f"no data root for {ds!r}: pass --data-root {ds}=DIR")
        if not Path(roots[ds]).is_dir():
            raise VrferError(f"{roots[ds]}: data root for {ds!r} not found")
    train_sets = []
    for ds in d["datasets"]:
        train_sets.append(_load(ds, roots[ds], "train", recipe))
    train = concat(train_sets) if len(train_sets) > 1 else train_sets[0]
    val = _load(d["val"], roots[d["val"]], "valid", recipe, mode="majority")
    if not quiet:  # rows the readers leave out by rule (AffectNet's expressions 8-10, its per-class cap)
        for ds, fs in [*zip(d["datasets"], train_sets), (d["val"], val)]:
            if getattr(fs, "dropped", None):
                print(f"{ds}: left out {sum(fs.dropped.values())} rows: "
                      f"{', '.join(f'{n} {why}' for why, n in fs.dropped.items())}", flush=True)
    if d["limit"] and d["limit"] < len(train):
        if not quiet:
            print(f"data.limit: training on {d['limit']} of {len(train)} images", flush=True)
        idx = np.random.default_rng(recipe["seed"]).permutation(len(train))[: d["limit"]]
        train = train.subset(np.sort(idx))
    if d["val_limit"] and d["val_limit"] < len(val):
        if not quiet:
            print(f"data.val_limit: validating on the first {d['val_limit']} of {len(val)} images", flush=True)
        val = val.subset(np.arange(d["val_limit"]))
    return train, val


def _load(ds: str, root: str, split: str, recipe: dict, mode: str | None = None) -> FaceSet:
    d = recipe["data"]
    return load_split(ds, root, split, mode or d["label_mode"], d["votes"], skip_bad=d["skip_bad"],
                      affectnet_cap=d["affectnet_cap"], seed=recipe["seed"])


# ---------------------------------------------------------------- model

# architectures whose recipes (the paper's) are meant to start from a public pretrained release: from
# random weights, with 0-255 pixels (std 1, as those releases expect), their training diverges
PRETRAINED_ARCHS = ("vgg-face", "vgg-f")


def build_model(recipe: dict, log=None):
    """The network a recipe starts from. log: where to say what was loaded (None: silent)."""
    over = {"input_mode": recipe["input_mode"], "occlusion": recipe["occlusion"]}
    if recipe["image_size"]:
        over["image_size"] = recipe["image_size"]
    bw = recipe["backbone_weights"]
    if bw and not recipe["init_from"] and not Path(bw).exists() and bw != "imagenet":
        raise VrferError(f"recipe: backbone_weights {bw!r} does not exist")
    model = None
    if not recipe["init_from"]:
        model = create_model(recipe["model"], pretrained=False, **over)
        if bw:
            from ..models.importers import load_backbone_weights
            report = load_backbone_weights(model, bw)
            if log:
                log(f"backbone weights: {report}")
        elif model.cfg.arch in PRETRAINED_ARCHS:
            import sys
            print(f"vrfer: warning: {model.cfg.arch} starts from random weights (backbone_weights is empty); "
                  "the paper fine-tunes the pretrained network (--set backbone_weights=FILE), and from "
                  "random weights this recipe's training can diverge", file=sys.stderr, flush=True)
    if recipe["init_from"]:   # stage 2 starts from stage 1's weights: a run folder, a file or a bundled model
        try:
            weights = resolve(recipe["init_from"], "torch").weights
        except VrferError:
            raise VrferError(f"recipe: init_from {recipe['init_from']!r} is neither a file, a run folder nor a "
                             "bundled model") from None
        model = load_checkpoint(weights, **over)
    return model


def class_prior(train: FaceSet) -> np.ndarray:
    """The training data's class prior: the mean target (soft labels count by their votes), floored at 1e-4."""
    p = train.targets.astype(np.float64).mean(0)
    p = np.maximum(p / p.sum(), 1e-4)  # a class absent from the data still gets a (tiny) prior: logs stay finite
    return p / p.sum()


@contextlib.contextmanager
def prior_in_bias(model, offset: torch.Tensor | None):
    """While inside, the classifier's bias includes `offset` (tau * log prior of a logit-adjusted run).

    A model trained with the logit-adjusted loss learns balanced logits f(x); f(x) + tau * log(prior)
    are the ordinary, prior-calibrated logits. Validation and every saved file use the latter, so a
    saved model means the same whatever loss trained it, and inference-time prior knobs stay one thing.
    """
    if offset is None:
        yield
        return
    bias = model.classifier.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.add_(offset.to(bias.device))
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(saved)  # exactly as before (adding and subtracting is not exact in float)


def balanced_weights(labels: np.ndarray, balance: float) -> np.ndarray:
    """Sampling weight of each image, n_class^-balance (normalised): balance 1 draws every class equally
    often, 0.5 in proportion to the square root of its size. Classes are the majority labels."""
    counts = np.bincount(labels, minlength=int(labels.max()) + 1).astype(np.float64)
    w = counts[labels] ** -balance
    return w / w.sum()


def epoch_order(n: int, steps: int, batch: int, weights: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """The epoch's image order: a shuffle of the whole set, or (class-balanced sampling) as many images
    drawn with replacement by `weights`. Drawn from the epoch's generator, so a resumed run draws the same."""
    if weights is None:
        return torch.randperm(n, generator=g)[:steps * batch]
    return torch.multinomial(weights, steps * batch, replacement=True, generator=g)


# ---------------------------------------------------------------- loss

def loss_fn(logits, targets, labels, mode: str, smoothing: float, g: torch.Generator):
    if mode == "majority":
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    if mode == "crossentropy":
        return F.cross_entropy(logits, targets, label_smoothing=smoothing)
    if mode == "probability":  # one label drawn from the vote distribution per image and batch
        drawn = torch.multinomial(targets.cpu(), 1, generator=g).squeeze(1).to(logits.device)
        return F.cross_entropy(logits, drawn, label_smoothing=smoothing)
    # multi_target (Barsoum et al.): any of the accepted labels counts as right
    p = torch.softmax(logits, 1)
    return -torch.log((p * targets).amax(1).clamp_min(1e-7)).mean()


# ---------------------------------------------------------------- distributed

def _dist_setup():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import torch.distributed as tdist
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend)
    rank = tdist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, torch.device("cpu")


def _ddp(model, world: int, device):
    """The model as the training steps call it: under torchrun, wrapped to average the gradients of the ranks."""
    if world <= 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# ---------------------------------------------------------------- checkpoint

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


def write_metrics(metrics: list[dict], path: Path) -> None:
    """metrics.jsonl rewritten whole from the checkpoint's rows: a resumed run never repeats an epoch."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in metrics))
    os.replace(tmp, path)


def save_model_plain(model, path: Path) -> None:
    """Save with DSD masks baked in, under the usual weight names."""
    if dsd.is_pruned(model):
        clone = copy.deepcopy(model)
        dsd.remove_masks(clone)
        save_model(clone, path, model.cfg)
    else:
        save_model(model, path)


# ---------------------------------------------------------------- plots

def plot_curves(metrics: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [m["train_loss"] for m in metrics], label="train")
    ax[0].plot(ep, [m["val_loss"] for m in metrics], label="validation")
    ax[0].set_title("loss"); ax[0].legend()
    ax[1].plot(ep, [100 * m["val_acc"] for m in metrics], color="C2", label="saved model")
    if "val_acc_trained" in metrics[-1]:  # optim.ema: the average is saved; the trained weights beside it
        ax[1].plot(ep, [100 * m.get("val_acc_trained", m["val_acc"]) for m in metrics], color="C2", ls="--",
                   label="trained weights")
        ax[1].legend()
    ax[1].set_title("validation accuracy (%)")
    ax[2].semilogy(ep, [m["lr"] for m in metrics], color="C3")
    ax[2].set_title("learning rate")
    for a in ax:
        a.set_xlabel("epoch"); a.grid(alpha=0.3)
    for m in metrics:  # shade the sparse phase
        if m["phase"] == "sparse":
            for a in ax:
                a.axvspan(m["epoch"] - 0.5, m["epoch"] + 0.5, color="0.9", zorder=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------- optimiser and schedule

def make_optimizer(model, o: dict) -> torch.optim.Optimizer:
    # built before any DSD mask, so the parameter order is the same in every run and on resume
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": o["weight_decay"]},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"])


def cosine_lr(step: int, total: int, warmup: int, floor: float) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine from 1 down to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def make_scheduler(opt, o: dict, epochs: int, steps_per_epoch: int):
    """plateau: stepped once per epoch with the validation error; cosine and constant: once per step."""
    if o["schedule"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1,
                                                          patience=o["plateau_patience"], min_lr=o["lr_floor"])
    if o["schedule"] == "cosine":
        total, warm, floor = epochs * steps_per_epoch, o["warmup_epochs"] * steps_per_epoch, o["lr_floor"] / o["lr"]
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_lr(step, total, warm, floor))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


# ---------------------------------------------------------------- one epoch

def load_teachers(spec: str, device) -> list | None:
    """`distill.teacher`: one model, or several joined by "+" (an ensemble). Every member must take the
    same input, since all of them see the one augmented face prepared for the first."""
    if not spec:
        return None
    names = [n.strip() for n in spec.split("+")]
    members = [resolve(n, "torch").torch_model().to(device).eval() for n in names]
    key = lambda c: (c.image_size, c.in_chans, c.mean, c.std, c.input_mode, c.occlusion)  # noqa: E731
    for name, m in zip(names[1:], members[1:]):
        if key(m.cfg) != key(members[0].cfg):
            raise VrferError(f"distill.teacher: {name} takes another input than {names[0]} "
                             "(an ensemble's members must share image size, channels, mean/std and input mode)")
    return members


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Seed an epoch from (seed, epoch): dropout through torch's global generator; the order, augmentation
    and drawn labels through the generator returned. So a resumed run draws what an uninterrupted one did."""
    seed = seed * 100_003 + epoch
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def epoch_batches(train: FaceSet, order, steps: int, batch: int, cfg, aug, g, teacher_cfg=None):
    """Augmented batches of one epoch in `order`: (x, labels, targets, teacher's x or None).

    Lazy, so that each batch draws from `g` after the previous step's loss did (the order that
    makes a run reproducible). The teacher sees the same augmented face, uncovered."""
    images, labels, targets = (torch.from_numpy(a) for a in (train.images, train.labels, train.targets))
    for step in range(steps):
        idx = order[step * batch:(step + 1) * batch]
        g_teacher = None
        if teacher_cfg is not None:
            g_teacher = torch.Generator().manual_seed(0)
            g_teacher.set_state(g.get_state())
        x = prepare(images[idx], cfg, aug, g)
        x_teacher = prepare(images[idx], teacher_cfg, aug, g_teacher) if teacher_cfg is not None else None
        t = targets[idx]
        if aug.mixup:
            x, t, x_teacher = mix_batch(x, t, x_teacher, aug.mixup, g)
        yield x, labels[idx], t, x_teacher


def mix_batch(x, targets, x_teacher, alpha: float, g: torch.Generator):
    """Mixup (Zhang et al. 2018): the batch blended with a shuffled copy of itself by one weight drawn from
    Beta(alpha, alpha), the faces (and the teacher's view of them) and their label distributions alike.
    Drawn from `g`, so a resumed run mixes as an uninterrupted one did."""
    # torch's Beta takes no generator: numpy's, seeded from g, keeps the draw a function of g alone
    lam = float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=g))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=g)
    mix = lambda a: lam * a + (1 - lam) * a[perm]  # noqa: E731
    return mix(x), mix(targets), (mix(x_teacher) if x_teacher is not None else None)


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), one view per face: for each face, minus the mean log
    probability of picking a face of its own expression among all other faces of the batch, by cosine
    similarity / temperature. Faces without another of their expression in the batch do not count."""
    z = F.normalize(features.float(), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positive.sum(1)
    has = n_pos > 0
    if not has.any():
        return features.sum() * 0.0
    mean_pos = log_prob.masked_fill(~positive, 0.0).sum(1)[has] / n_pos[has]
    return -mean_pos.mean()


class Criterion:
    """A recipe's training loss on a batch: its label mode's loss (`loss_fn`), on logits shifted by
    `la_offset` for the logit-adjusted loss, plus loss.supcon x supcon_loss on the representation of `model`,
    blended with distillation from `teacher` (a list of models)."""

    def __init__(self, recipe: dict, la_offset: torch.Tensor | None = None, teacher: list | None = None,
                 model=None):
        self.mode, self.smoothing = recipe["data"]["label_mode"], recipe["optim"]["label_smoothing"]
        if recipe["augment"]["mixup"]:   # the blended targets are distributions (FaceSet.targets of majority: one-hot)
            self.mode = "crossentropy"
        self.la_offset, self.teacher = la_offset, teacher
        self.weight, self.T = recipe["distill"]["weight"], recipe["distill"]["temperature"]
        self.supcon, self.supcon_T = recipe["loss"]["supcon"], recipe["loss"]["supcon_temperature"]
        self._rep: list = []
        if self.supcon:      # the last layer's input, grabbed on every training forward pass
            from ..inference.representation import head
            head(model).register_forward_pre_hook(lambda _m, inp: self._rep.append(inp[0].flatten(1)))

    def __call__(self, logits, labels, targets, x_teacher, g: torch.Generator):
        if self.la_offset is not None:  # logit-adjusted loss: rare classes need a larger margin
            logits = logits + self.la_offset.to(logits.device)
        loss = loss_fn(logits.float(), targets, labels, self.mode, self.smoothing, g)
        if self.supcon:
            loss = loss + self.supcon * supcon_loss(self._rep[-1], labels, self.supcon_T)
            self._rep.clear()
        if self.teacher is None:
            return loss
        T = self.T
        with torch.no_grad():  # an ensemble teaches the mean of its members' softened answers
            xt = x_teacher.to(logits.device)
            target = torch.stack([F.softmax(m(xt).float() / T, 1) for m in self.teacher]).mean(0)
        soft = F.kl_div(F.log_softmax(logits.float() / T, 1), target, reduction="batchmean") * T * T
        return (1 - self.weight) * loss + self.weight * soft


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512_BF16), from /proc/cpuinfo's flags."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo", encoding="ascii", errors="replace")
                      if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_bf16(setting: str, device) -> bool:
    """recipe["amp"] for this device: bf16 autocast on a GPU, and on a CPU only where it is native (elsewhere
    it is emulated and slower than float32)."""
    if setting != "auto":
        return setting == "bf16"
    return device.type == "cuda" or cpu_has_native_bf16()


def diverged(recipe: dict, what: str):
    """Stop a run that diverged: it would otherwise go on and save NaN weights as its best model. The
    checkpoint of the last finished epoch stays as it was."""
    hint = (" or start from pretrained weights (backbone_weights)"
            if recipe["model"] in PRETRAINED_ARCHS and not recipe["backbone_weights"] else "")
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
    """Validation accuracy and mean per-class recall (vrfer.evaluate.metrics) and loss, with the
    prior-calibrated logits (`offset`: what a logit-adjusted or class-balanced run adds to its bias to get them)."""
    with prior_in_bias(model, offset):
        probs = predict_proba(model, val_set.images, batch_size=512)
    m = metrics(val_set.labels, probs.argmax(1))
    nll = -np.log(np.clip(probs[np.arange(len(probs)), val_set.labels], 1e-7, None))
    return {"val_acc": m["accuracy"], "val_mean_recall": m["mean_class_recall"], "val_loss": float(nll.mean())}


# ---------------------------------------------------------------- the run

def recorded_as_run(recipe: dict, model) -> dict:
    """The recipe as it runs: a model started from init_from is that file's architecture."""
    recipe = json.loads(json.dumps(recipe))
    recipe["model"] = model.cfg.arch
    return recipe


class Setup:
    """What a run adds around plain SGD, fixed at its start: the class prior's offsets (logit-adjusted loss,
    class-balanced sampling) and the moving average of the weights (optim.ema)."""

    def __init__(self, recipe: dict, train_set: FaceSet, model):
        prior = class_prior(train_set)
        # every file this run writes carries the training prior (for --prior at inference)
        model.cfg = replace(model.cfg, extra={**model.cfg.extra, "train_prior": [round(float(v), 6) for v in prior]})
        log_prior = torch.log(torch.as_tensor(prior, dtype=torch.float32).clamp_min(1e-4))
        tau, q = recipe["loss"]["logit_adjust"], recipe["data"]["balance"]
        self.la_offset = tau * log_prior if tau else None  # added to the logits in the loss
        self.sample_weights = torch.from_numpy(balanced_weights(train_set.labels, q)) if q else None
        # Sampling by n^-q trains on a prior ~ prior^(1-q): adding q * log prior gives back ordinary,
        # prior-calibrated logits, so validation and every saved file mean the same as a plain run's.
        self.post_offset = (tau + q) * log_prior if (tau or q) else None
        # With optim.ema the moving average is the model: validated, chosen as best and saved (an unpruned copy
        # holds it); the trained weights, their masks and the optimiser go on as without it.
        decay = recipe["optim"]["ema"]
        self.ema = WeightEMA(model, decay) if decay else None
        self.averaged = copy.deepcopy(model) if decay else None

    def kept(self, model):
        """The model that is validated, may be chosen and is saved: the moving average, or `model` itself."""
        return self.ema.copy_to(self.averaged) if self.ema is not None else model


@dataclass
class Run:
    """A run between epochs: what it trains, where it writes, and the record its checkpoint keeps."""
    out: Path
    recipe: dict
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


def starting_model(recipe: dict, out: Path, resume: bool, log=None):
    """The network a run starts from. A resumed run's own best.safetensors has its architecture and config, so
    resuming needs nothing outside the run folder (init_from or backbone_weights may have moved); the
    checkpoint's weights replace these."""
    if resume and (out / "best.safetensors").is_file():
        return load_checkpoint(out / "best.safetensors")
    return build_model(recipe, log=log)


def checkpoint(run: Run) -> dict:
    """checkpoint.pt: all a run needs to go on after its last finished epoch exactly as if never stopped."""
    m, ema = run.model, run.setup.ema
    return {"epoch": run.epochs_done, "recipe": run.recipe, "model": m.state_dict(), "masks": dsd.get_masks(m),
            "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "rng_cpu": torch.get_rng_state(),
            "best_acc": run.best_acc, "metrics": run.metrics, **({"ema": ema.state_dict()} if ema is not None else {})}


def restore(run: Run, state: dict) -> None:
    """Continue `run` from its checkpoint (`checkpoint`), which must have been started with the same recipe."""
    started = with_defaults(state["recipe"])
    if started != run.recipe:
        changed = sorted(k for k in run.recipe if started.get(k) != run.recipe[k])
        raise VrferError(f"{run.out / CHECKPOINT}: the recipe differs from the one the run started with "
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
        run.log(f"resuming {run.out} after epoch {run.epochs_done} of {total_epochs(run.recipe)} (best validation "
                f"accuracy so far {100 * run.best_acc:.2f}%)")


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
    if run.recipe["optim"]["schedule"] == "plateau":
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
        run.log(f"epoch {epoch + 1}/{total_epochs(run.recipe)} [{phase}] train_loss {train_loss:.4f} "
                f"val_acc {100 * val['val_acc']:.2f}% recall {val['val_mean_recall']:.3f} "
                f"val_loss {val['val_loss']:.4f} lr {lr:.2g} "
                f"{row['time_s']}s ({row['img_per_s']} img/s){' *best*' if best else ''}")


def train(recipe: dict, roots: dict[str, str], out_dir, resume: bool = False, quiet: bool = False) -> Path:
    """Train `recipe` into `out_dir`; returns the run folder. resume=True continues the run there
    from its last checkpoint, with the recipe it recorded (a different `recipe` is an error)."""
    out = Path(out_dir)
    state = checkpoint_to_resume(out, resume)
    world, rank, device = _dist_setup()
    log = (lambda line: print(line, flush=True)) if rank == 0 and not quiet else None
    torch.manual_seed(recipe["seed"])  # initial weights follow the seed too (same on every DDP rank)
    model = starting_model(recipe, out, resume, log)
    recipe = recorded_as_run(recipe, model)
    dcfg = recipe["dsd"]
    rates = dsd.layer_sparsity_targets(model, dcfg["sparsity"]) if dcfg["enabled"] else {}  # checked before the data loads
    train_set, val_set = load_data(recipe, roots, quiet=log is None)
    out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    setup = Setup(recipe, train_set, model)
    o, epochs = recipe["optim"], total_epochs(recipe)
    batch = max(1, o["batch_size"] // world)  # per rank
    steps = len(train_set) // (batch * world) or 1
    opt = make_optimizer(model, o)
    sched = make_scheduler(opt, o, epochs, steps)
    run = Run(out, recipe, model, opt, sched, setup, val_set, amp=autocast_bf16(recipe["amp"], device),
              main=rank == 0, log=log)
    if resume:
        restore(run, state)
    elif run.main:
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2))

    teacher = load_teachers(recipe["distill"]["teacher"], device) if recipe["distill"]["weight"] > 0 else None
    criterion = Criterion(recipe, setup.la_offset, teacher, model)
    net = _ddp(model, world, device)
    step_sched = None if o["schedule"] == "plateau" else sched  # plateau steps once an epoch, in end_epoch
    aug = Augment(**recipe["augment"])
    for epoch in range(run.epochs_done, epochs):
        phase = dsd.enter_phase(model, epoch, dcfg, rates)
        g = epoch_generator(recipe["seed"], epoch)
        order = epoch_order(len(train_set), steps, batch * world, setup.sample_weights, g)[rank::world]
        batches = epoch_batches(train_set, order, steps, batch, model.cfg, aug, g, teacher[0].cfg if teacher else None)
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
    if world > 1:
        import torch.distributed as tdist
        tdist.barrier()
    return out
