"""A recipe's training loss (`Criterion`): its label mode's loss, the logit-adjusted loss, a supervised
contrastive term, and distillation from a teacher or an ensemble of teachers (`load_teachers`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import VrferError
from ..inference.loader import resolve
from ..inference.representation import head
from .recipe import Recipe


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


def load_teachers(spec: str, device, classes: tuple | None = None) -> list | None:
    """`distill.teacher`: one model, or several joined by "+" (an ensemble). Every member must take the
    same input, since all of them see the one augmented face prepared for the first, and answer with the
    student's `classes` (None: any)."""
    if not spec:
        return None
    names = [n.strip() for n in spec.split("+")]
    members = [resolve(n, "torch").torch_model().to(device).eval() for n in names]
    key = lambda c: (c.image_size, c.in_chans, c.mean, c.std, c.input_mode, c.occlusion)  # noqa: E731
    for name, m in zip(names[1:], members[1:]):
        if key(m.cfg) != key(members[0].cfg):
            raise VrferError(f"distill.teacher: {name} takes another input than {names[0]} "
                             "(an ensemble's members must share image size, channels, mean/std and input mode)")
    for name, m in zip(names, members):
        if classes is not None and tuple(m.cfg.classes) != tuple(classes):
            raise VrferError(f"distill.teacher: {name} answers with other classes ({', '.join(m.cfg.classes)}) "
                             f"than the model it teaches ({', '.join(classes)})")
    return members


class Criterion:
    """A recipe's training loss on a batch: its label mode's loss (`loss_fn`), on logits shifted by
    `la_offset` for the logit-adjusted loss, plus loss.supcon x supcon_loss on the representation of `model`,
    blended with distillation from `teacher` (a list of models)."""

    def __init__(self, recipe: Recipe, la_offset: torch.Tensor | None = None, teacher: list | None = None,
                 model=None):
        self.mode, self.smoothing = recipe.data.label_mode, recipe.optim.label_smoothing
        if recipe.augment.mixup:   # the blended targets are distributions (FaceSet.targets of majority: one-hot)
            self.mode = "crossentropy"
        self.la_offset, self.teacher = la_offset, teacher
        self.weight, self.T = recipe.distill.weight, recipe.distill.temperature
        self.supcon, self.supcon_T = recipe.loss.supcon, recipe.loss.supcon_temperature
        self._rep: list = []
        if self.supcon:      # the last layer's input, grabbed on every training forward pass
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
