"""Dataset readers. `load_split` is the one table from a dataset name to its reader, used by training,
evaluation and reproduction; labelled folders of any other data (CK+48, ...) are read by
vrfer.datasets.folder through predict's image path instead (vrfer.evaluate.predict_folder)."""

from __future__ import annotations

from ..errors import VrferError

DATASETS = ("ferplus", "affectnet")


def load_split(dataset: str, root, split: str, mode: str = "majority", votes: str = "label",
               skip_bad: bool = False, affectnet_cap: int | None = None, seed: int = 0):
    """One split of a dataset as a FaceSet. split: train | valid | test (AffectNet has no test split: its
    validation set serves as valid and test, as in the paper). mode: the label rule (vrfer.datasets.labels)."""
    if dataset == "ferplus":
        from .ferplus import load_ferplus
        return load_ferplus(root, split, mode, votes, skip_bad=skip_bad)
    if dataset == "affectnet":
        from .affectnet import DEFAULT_CAP, load_affectnet
        return load_affectnet(root, "train" if split == "train" else "validation",
                              cap=DEFAULT_CAP if affectnet_cap is None else affectnet_cap, seed=seed,
                              skip_bad=skip_bad, label_mode=mode)
    raise VrferError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
