"""The training augmentations' settings: one declaration, read by the recipe (its [augment] table, each value
checked against its field's `allowed` range) and applied by vrfer.inference.preprocess.prepare. No torch here, so a
recipe is checked before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, field


def _in(default, allowed: str, items: str = ""):
    """A field allowing numbers in `allowed` (for a tuple: each item; `items`: the interval of its length)."""
    return field(default=default, metadata={"allowed": allowed, "items": items})


@dataclass(frozen=True)
class Augment:
    # horizontal flips: the paper's only augmentation
    flip: bool = True
    # max translation, fraction of the crop side (Microsoft: 0.08)
    shift: float = _in(0.0, "[0, 1)")
    # max rotation, degrees (Microsoft: 20)
    rotate: float = _in(0.0, "[0, 180]")
    # max zoom in/out, e.g. 0.05 (Microsoft: 1.05)
    scale: float = _in(0.0, "[0, 1]")
    # share of faces with a synthetic headset painted over the top
    headset: float = _in(0.0, "[0, 1]")
    # range of the headset's lower edge, fraction of the crop height (low <= high)
    headset_edge: tuple = _in((0.4, 0.6), "[0, 1)", items="[2, 2]")
    # share of faces with webcam-like degradations (gamma, contrast, blur, noise, JPEG, down-then-up scaling)
    photometric: float = _in(0.0, "[0, 1]")
    # alpha of mixup (Zhang et al. 2018), applied to whole batches by the trainer: each batch blended with a
    # shuffled copy of itself, images and label distributions, by one Beta(alpha, alpha) weight; 0 = off
    mixup: float = _in(0.0, "[0, inf)")
    # share of faces with random erasing (Zhong et al. 2020): one rectangle (2-33% of what the model sees)
    # replaced by noise
    erase: float = _in(0.0, "[0, 1]")

    @property
    def geometric(self) -> bool:
        return bool(self.shift or self.rotate or self.scale)
