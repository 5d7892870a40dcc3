"""Adapting a trained model to a deployment's own setup (its camera, light, headset and people).

Two steps, chosen by measurement on taiwanese-dev and JAFFE (docs/RESULTS.md, "Adaptation and calibration"):

1. AdaBN (Li et al. 2016), needs no labels: the BatchNorm statistics are re-estimated on faces of the
   setup, so the network normalises its activations the way that camera and light make them.
2. A new last layer, needs labels: multinomial logistic regression on the network's representation
   (vrfer.inference.representation), pulled towards the generic layer (an L2-SP penalty, Li et al. 2018:
   lam * ||W - W_generic||^2), so a few dozen people do not overfit it; only the rows of classes the labelled
   photos hold are refitted, so classes the setup's photos lack (contempt, usually) keep their generic rows. It is fitted on each labelled face and its
   mirror image (the paper's flip augmentation; HEAD_MIRROR), which gained on both dev sets.

The result is an ordinary vrfer model (same architecture, new BatchNorm statistics and last layer) that
every command takes with --model FILE; cfg.extra["adapted"] records what it was adapted on. Its honest
accuracy is estimated leave-one-person-out: each person is scored by an adaptation fitted without them
(`loo_estimate`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..errors import NoFaceError, VrferError
from ..outputs import plural
from ..inference.preprocess import prepare
from ..inference.representation import fit_head, head, logits_and_features
from .reference import fit_head_on_people, HEAD_KEY, REFERENCE_BLEND, REFERENCE_L2, REFERENCE_MIRROR, with_head
from ..recognizer import load_image, Recognizer
from ..inputs import is_video, media_of, video_frames
from ..evaluate import folder_faces, scores, subjects_of
from ..inference.loader import torch_model
from ..inference.postprocess import PostProcess

HEAD_L2 = 1e-2          # lam of the L2-SP penalty, chosen leave-one-person-out on taiwanese-dev and JAFFE
HEAD_MIRROR = True      # the head also sees each labelled face mirrored: +0.7 / +2.8 points leave-one-person-out on
                        # taiwanese-dev / JAFFE (docs/RESULTS.md, "Adaptation and calibration"); answers are unchanged
                        # in cost (the scored face is not mirrored)
MIN_PEOPLE_LOO = 2      # a leave-one-person-out estimate needs someone left to fit on


@torch.no_grad()
def adabn(model: nn.Module, crops: np.ndarray, batch_size: int = 128) -> nn.Module:
    """A copy of `model` whose BatchNorm statistics are the mean and variance over `crops` (uint8 face
    crops of the setup; no labels). The weights are unchanged."""
    if len(crops) < 2:
        raise VrferError("AdaBN needs at least 2 faces of the setup")
    m = copy.deepcopy(model).eval()
    bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return m
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None          # a cumulative average over all batches, not an EMA
        bn.train()                  # only BatchNorm: dropout stays off
    for i in range(0, len(crops), batch_size):
        chunk = crops[i:i + batch_size]
        if len(chunk) == 1:         # BatchNorm cannot take a batch of one in training mode
            chunk = crops[i - 1:i + 1]
        m(prepare(chunk, m.cfg))
    for bn in bns:
        bn.momentum = 0.1
    return m.eval()


def _check_labelled(labels: np.ndarray, subjects: np.ndarray | None) -> None:
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        raise VrferError("adaptation needs labelled faces of at least 2 classes")
    if subjects is not None and len(subjects) != len(labels):
        raise VrferError("one subject per labelled face is needed")


def adapt_arrays(model: nn.Module, crops: np.ndarray | None = None, labels: np.ndarray | None = None,
                 unlabelled: np.ndarray | None = None, lam: float = HEAD_L2, use_adabn: bool = True,
                 mirror: bool = HEAD_MIRROR) -> nn.Module:
    """The adapted copy of `model`: AdaBN on every face given (labelled and unlabelled: the statistics
    need no labels), then a new last layer fitted on the labelled ones (when there are any), and on their
    mirror images too where `mirror`. Only the rows of the classes the labels hold are refitted: a class with no
    labelled face keeps the model's own row (fitted without examples, it would only be pushed down)."""
    faces = [a for a in (crops, unlabelled) if a is not None and len(a)]
    if not faces:
        raise VrferError("adaptation needs faces of the setup (labelled, unlabelled or both)")
    m = adabn(model, np.concatenate(faces)) if use_adabn else copy.deepcopy(model).eval()
    if labels is not None and len(labels):
        _check_labelled(labels, None)
        _, feats = logits_and_features(m, crops)
        targets = labels
        if mirror:
            feats = np.concatenate([feats, logits_and_features(m, np.ascontiguousarray(crops[:, :, ::-1]))[1]])
            targets = np.concatenate([labels, labels])
        layer = head(m)
        w, b = fit_head(feats, targets, layer.weight.detach().numpy(), layer.bias.detach().numpy(), lam,
                        rows=np.unique(labels).tolist())
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    m.cfg = adapted_config(model, f"{model.cfg.name}-adapted", {
        "faces": 0 if labels is None else int(len(labels)),
        "unlabelled_faces": 0 if unlabelled is None else int(len(unlabelled)), "adabn": use_adabn, "lam": lam,
        "mirror": bool(mirror and labels is not None and len(labels))}, labels)
    return m


def loo_predictions(model: nn.Module, crops: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                    unlabelled: np.ndarray | None = None, lam: float = HEAD_L2, use_adabn: bool = True,
                    progress: bool = False, mirror: bool = HEAD_MIRROR) -> np.ndarray:
    """Leave-one-person-out logits (N, C): each person's faces scored by an adaptation fitted on the
    other people's labelled faces (and the unlabelled faces, which hold none of the labelled people's
    photos by the caller's word). A person is never scored by a fit that saw any of their faces."""
    subjects = np.asarray(subjects).astype(str)
    people = np.unique(subjects)
    if len(people) < MIN_PEOPLE_LOO:
        raise VrferError(f"a leave-one-person-out estimate needs at least {MIN_PEOPLE_LOO} people "
                         f"(the `subject` column names {len(people)})")
    out = np.zeros((len(labels), head(model).out_features), np.float32)
    from tqdm import tqdm
    for person in tqdm(people, desc="leave-one-person-out", disable=None if progress else True, leave=False):
        fit = subjects != person
        m = adapt_arrays(model, crops[fit], labels[fit], unlabelled, lam, use_adabn, mirror)
        out[~fit] = logits_and_features(m, crops[~fit])[0]
    return out


def train_prior_of(labels: np.ndarray, n_classes: int) -> list[float]:
    """Class frequencies of the adaptation set, +1 smoothed so every class stays possible (what
    --prior uniform divides out of an adapted model's answers)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64) + 1.0
    return [float(v) for v in counts / counts.sum()]


def adapted_config(model: nn.Module, name: str, record: dict, labels: np.ndarray | None):
    """The adapted model's config: the base's, renamed, with what it was adapted on. An adapted last layer
    answers plainly (its prior is the setup's class mix), so default_post becomes the plain model's."""
    cfg = model.cfg
    extra = dict(cfg.extra or {})
    # a referenced head (vrfer.personal.reference) reads the base's representation, which AdaBN changes: adapt_folder
    # refits it on the setup's people where it can, else the adapted model has none
    extra.pop(HEAD_KEY, None)
    extra["adapted"] = {"base_model": cfg.name, **record, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    if labels is not None and len(labels):
        extra["train_prior"] = train_prior_of(labels, len(cfg.classes))
        extra["default_post"] = {"prior": "train", "tau": 1.0}
    return replace(cfg, name=name, extra=extra,
                   trained_on=f"{cfg.trained_on}; adapted: {record.get('summary', '')}".strip("; "))


def unlabelled_faces(rec, sources, max_frames: int = 2000, progress: bool = False,
                     skip_bad: bool = False) -> tuple[np.ndarray, dict]:
    """Face crops (the wearer's face of each image or video frame, vrfer.faces.wearer_first) from image files,
    folders of images and video files of the setup, through predict's path. Returns (crops, counts): counts of
    images and frames read and of those where no face was found."""

    crops, counts = [], {"images": 0, "frames": 0, "no_face": 0}

    def take(img, into=crops) -> None:
        faces = rec.find_faces(img)
        if not faces:
            counts["no_face"] += 1
            return
        into.append(rec.crops(img, faces[:1])[0])      # the wearer (wearer_first)

    for src in sources:
        if str(src) == "":      # Path("") is the working folder: an unset shell variable must not walk it
            raise VrferError("--unlabelled '': empty path")
        for f in media_of(src):
            if is_video(f):
                own, seen = [], 0       # a video counts only when read to its end: never a part of it silently
                no_face = counts["no_face"]
                try:
                    for frame in video_frames(f, max_frames, whole=True):
                        seen += 1
                        take(frame, own)
                except VrferError as e:
                    if not skip_bad:
                        raise VrferError(f"{f}: {e}") from None
                    counts["unreadable"] = counts.get("unreadable", 0) + 1     # --skip-bad: skipped, counted
                    counts["no_face"] = no_face
                    continue
                crops.extend(own)
                counts["frames"] += seen
            else:
                try:
                    take(load_image(f))
                except NoFaceError:
                    counts["no_face"] += 1
                except VrferError as e:
                    if not skip_bad:
                        raise VrferError(f"{f}: {e}") from None
                    counts["unreadable"] = counts.get("unreadable", 0) + 1     # --skip-bad: skipped, counted
                    continue
                counts["images"] += 1
    return (np.stack(crops) if crops else np.zeros((0, 48, 48), np.uint8)), counts


def adapt_folder(model, root=None, unlabelled=(), face: str = "detect", name: str | None = None,
                 lam: float = HEAD_L2, estimate: bool = True, skip_bad: bool = False, threads: int | None = None,
                 progress: bool = True, log=None, mirror: bool = HEAD_MIRROR) -> tuple[nn.Module, dict]:
    """Adapt `model` (name, file or object) to a setup: `root` a labelled folder of it (labels.csv with
    `subject`), `unlabelled` image files, folders or videos of it (either or both). Returns (the adapted
    model, a report with the leave-one-person-out estimate when root has 2+ people and estimate=True).
    mirror=False: the last layer learns from the faces as they are only (a camera that sees the face from one
    side, where a mirror image is a view that never occurs)."""
    from pathlib import Path

    say = log or (lambda _line: None)
    base = torch_model(model)
    crops = labels = subjects = None
    report: dict = {"base_model": base.cfg.name, "lam": lam, "mirror": mirror}
    if root is not None:
        items, crops, found, _, info = folder_faces(base, root, face, "none", skip_bad, threads, progress)
        items = [it for it, f in zip(items, found) if f]
        labels = np.array([it.label for it in items], np.int64)
        subjects = subjects_of(items)
        _check_labelled(labels, subjects)
        report.update(labelled=str(root), faces=int(len(labels)), people=int(len(np.unique(subjects))),
                      no_face=info["no_face"], classes=sorted({base.cfg.classes[v] for v in labels.tolist()}))
        if info["no_face"]:
            report["no_face_files"] = info["no_face_files"]
        if info["skipped"]:
            report["skipped"] = info["skipped"]
        say(f"{root}: {plural(len(labels), 'labelled face')} of {plural(report['people'], 'person')}")
    extra = None
    if unlabelled:
        rec = Recognizer(base, face=face, backend="torch", threads=threads, prior="train")
        extra, counts = unlabelled_faces(rec, list(unlabelled), skip_bad=skip_bad)
        report["unlabelled"] = {"sources": [str(u) for u in unlabelled], **counts, "faces": int(len(extra))}
        say(f"unlabelled: {plural(len(extra), 'face')} from {plural(counts['images'], 'image')} and "
            f"{plural(counts['frames'], 'video frame')}"
            + (f" (no face found in {counts['no_face']} of them)" if counts["no_face"] else "")
            + (f"; {plural(counts['unreadable'], 'unreadable image or video')} skipped" if counts.get("unreadable") else ""))
    if (crops is None or not len(crops)) and (extra is None or not len(extra)):
        raise VrferError("no face of the setup to adapt on (give a labelled folder, unlabelled faces, or both)")
    if estimate and labels is not None and len(np.unique(subjects)) < MIN_PEOPLE_LOO:
        say(f"no leave-one-person-out estimate: it needs faces of at least {MIN_PEOPLE_LOO} people")
    if estimate and labels is not None and len(np.unique(subjects)) >= MIN_PEOPLE_LOO:
        say("estimating its accuracy leave-one-person-out (each person scored by a fit without them) ...")
        loo = loo_predictions(base, crops, labels, subjects, extra, lam, progress=progress, mirror=mirror)
        generic = PostProcess(base.cfg).apply(logits_and_features(base, crops)[0], logits=True).argmax(1)
        report["loo"] = scores(labels, loo.argmax(1))
        report["generic_same_faces"] = scores(labels, generic)
    adapted = adapt_arrays(base, crops, labels, extra, lam, mirror=mirror)
    absent = [c for i, c in enumerate(base.cfg.classes) if labels is not None and len(labels) and i not in set(labels)]
    if absent:
        say(f"no labelled {', '.join(absent)} faces: {'that class keeps' if len(absent) == 1 else 'those classes keep'} "
            "the generic model's weights")
    what = ", ".join(x for x in (f"{plural(report.get('faces', 0), 'labelled face')} of {plural(report.get('people', 0), 'person')} "
                                 f"({Path(str(root)).name})" if root is not None else "",
                                 f"{len(extra)} unlabelled faces" if extra is not None else "") if x)
    record = {k: v for k, v in report.items() if k not in ("base_model",)}
    record["summary"] = what
    adapted.cfg = adapted_config(base, name or adapted.cfg.name, record, labels)
    if labels is not None and len(labels):
        _fit_reference_head(adapted, crops, labels, subjects, mirror, report, say)
    return adapted, report


def _fit_reference_head(adapted: nn.Module, crops, labels, subjects, mirror: bool, report: dict, say) -> None:
    """The setup's referenced head (vrfer.personal.reference) on the adapted representation, where the labelled folder has
    people with 2+ neutral photos (each face read against the person's other neutral photos); else none, said."""
    feats = logits_and_features(adapted, crops)[1]
    flipped = logits_and_features(adapted, np.ascontiguousarray(crops[:, :, ::-1]))[1] if mirror else None
    try:
        head = fit_head_on_people(adapted, feats, labels, subjects, flipped,
                                  fitted_on=[{"data": report.get("labelled", "?"), "people": report.get("people"),
                                              "faces": report.get("faces")}])
    except VrferError:
        report["reference_head"] = None
        say("no referenced head: it needs people with 2 or more neutral photos each (vrfer.personal.reference); "
            "--reference auto and neutral calibrations are not available with this adapted model")
        return
    adapted.cfg = with_head(adapted.cfg, head)
    report["reference_head"] = {"people": report.get("people"), "blend": head.blend}
    say("fitted a referenced head on the setup's neutral photos (the wearer's reference, vrfer.personal.reference)")


def fit_reference_head(model, roots, face: str = "detect", occlusion: str = "none", lam: float | None = None,
                        blend: float | None = None, mirror: bool | None = None, threads: int | None = None,
                        progress: bool = True, log=None):
    """The referenced head (vrfer.personal.reference) fitted on labelled folders of people (vrfer.datasets.folder: labels.csv with a
    `subject` column and neutral photos), read as `vrfer evaluate --dataset folder` reads them (face, occlusion:
    "headset" paints vrfer's synthetic headset over the eyes). The default reads the clean photos (the network
    still sees only their lower half): drawn per photo, the synthetic headset's edge reaches into the read half of
    45-61% of these faces by a different amount in each, and a head fitted on that learns the drawing's jitter; fitted
    on the clean photos it reads faces behind the headset better on another data set (docs/RESULTS.md, "The wearer's
    neutral reference"). Each folder's people are its own (a subject name
    is prefixed with the folder's). The head records what it was fitted on (`fitted_on`: with each folder's data
    fingerprint, so that an evaluation can tell whether the head saw the data it scores)."""
    mirror = REFERENCE_MIRROR if mirror is None else mirror
    lam = REFERENCE_L2 if lam is None else lam
    blend = REFERENCE_BLEND if blend is None else blend
    say = log or (lambda _line: None)
    feats, flipped, labels, subjects, fitted_on = [], [], [], [], []
    for root in roots:
        items, crops, found, _, info = folder_faces(model, root, face, occlusion, False, threads, progress)
        items = [it for it, f in zip(items, found) if f]
        people = subjects_of(items)
        feats.append(logits_and_features(model, crops)[1])
        flipped.append(logits_and_features(model, np.ascontiguousarray(crops[:, :, ::-1]))[1] if mirror else None)
        labels.append(np.array([it.label for it in items], np.int64))
        subjects.append(np.array([f"{root}/{p}" for p in people]))
        fitted_on.append({"data": str(root).rstrip("/").split("/")[-1], "faces": int(len(items)),
                          "people": int(len(np.unique(people))), "face": face, "occlusion": occlusion,
                          "data_fingerprint": info["data_fingerprint"]})
        say(f"{root}: {plural(len(items), 'face')} of {plural(fitted_on[-1]['people'], 'person')}")
    return fit_head_on_people(model, np.concatenate(feats), np.concatenate(labels), np.concatenate(subjects),
                              np.concatenate(flipped) if mirror else None, lam, blend, fitted_on)
