"""A run's data: the recipe's training and validation sets (in the model's class set), the class prior, and
each epoch's seeded order and augmented batches (mixup included). An epoch draws everything from its own
generator (`epoch_generator`), so a run resumed from its last checkpoint draws what an uninterrupted one did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..datasets import load_split
from ..datasets.base import FaceSet, concat
from ..errors import VrferError
from ..inference.preprocess import prepare
from .recipe import Recipe


def load_data(recipe: Recipe, roots: dict[str, str], quiet: bool = True,
              classes: tuple | None = None) -> tuple[FaceSet, FaceSet]:
    """The recipe's joint training set and its validation set, from the given dataset roots.
    classes: the model's class set: the faces of those classes, labelled in its order (None: the readers' own).
    data.limit / data.val_limit keep a seeded sample of each (said on stdout unless quiet)."""
    d = recipe.data
    for ds in set(d.datasets) | {d.val}:
        if ds not in roots:
            raise VrferError(f"no data root for {ds!r}: pass --data-root {ds}=DIR")
        if not Path(roots[ds]).is_dir():
            raise VrferError(f"{roots[ds]}: data root for {ds!r} not found")
    train_sets = [_load(ds, roots[ds], "train", recipe, classes=classes) for ds in d.datasets]
    train = concat(train_sets) if len(train_sets) > 1 else train_sets[0]
    val = _load(d.val, roots[d.val], "valid", recipe, mode="majority", classes=classes)
    if not quiet:  # rows the readers leave out by rule (AffectNet's expressions 8-10, its per-class cap)
        for ds, fs in [*zip(d.datasets, train_sets), (d.val, val)]:
            if getattr(fs, "dropped", None):
                print(f"{ds}: left out {sum(fs.dropped.values())} rows: "
                      f"{', '.join(f'{n} {why}' for why, n in fs.dropped.items())}", flush=True)
    if d.limit and d.limit < len(train):
        if not quiet:
            print(f"data.limit: training on {d.limit} of {len(train)} images", flush=True)
        idx = np.random.default_rng(recipe.seed).permutation(len(train))[: d.limit]
        train = train.subset(np.sort(idx))
    if d.val_limit and d.val_limit < len(val):
        if not quiet:
            print(f"data.val_limit: validating on the first {d.val_limit} of {len(val)} images", flush=True)
        val = val.subset(np.arange(d.val_limit))
    return train, val


def _load(ds: str, root: str, split: str, recipe: Recipe, mode: str | None = None, classes=None) -> FaceSet:
    d = recipe.data
    fs = load_split(ds, root, split, mode or d.label_mode, d.votes, skip_bad=d.skip_bad,
                    affectnet_cap=d.affectnet_cap, seed=recipe.seed)
    return fs.with_classes(classes) if classes is not None else fs


def class_prior(train: FaceSet) -> np.ndarray:
    """The training data's class prior: the mean target (soft labels count by their votes), floored at 1e-4."""
    p = train.targets.astype(np.float64).mean(0)
    p = np.maximum(p / p.sum(), 1e-4)  # a class absent from the data still gets a (tiny) prior: logs stay finite
    return p / p.sum()


def balanced_weights(labels: np.ndarray, balance: float) -> np.ndarray:
    """Sampling weight of each image, n_class^-balance (normalised): balance 1 draws every class equally
    often, 0.5 in proportion to the square root of its size. Classes are the majority labels."""
    counts = np.bincount(labels, minlength=int(labels.max()) + 1).astype(np.float64)
    w = counts[labels] ** -balance
    return w / w.sum()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Seed an epoch from (seed, epoch): dropout through torch's global generator; the order, augmentation
    and drawn labels through the generator returned. So a resumed run draws what an uninterrupted one did."""
    seed = seed * 100_003 + epoch
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def epoch_order(n: int, steps: int, batch: int, weights: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """The epoch's image order: a shuffle of the whole set, or (class-balanced sampling) as many images
    drawn with replacement by `weights`. Drawn from the epoch's generator, so a resumed run draws the same."""
    if weights is None:
        return torch.randperm(n, generator=g)[:steps * batch]
    return torch.multinomial(weights, steps * batch, replacement=True, generator=g)


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
