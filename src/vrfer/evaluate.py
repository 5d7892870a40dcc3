"""A model tested on a data set or a labelled folder: the scores of vrfer.metrics (accuracy with a bootstrap
interval, per-class recall, mean per-class recall, confusion matrix), and the confusion matrix as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import CLASSES
from .datasets.base import FaceSet
from .errors import VrferError
from .inference.torch_backend import predict_proba
from .metrics import metrics
from .occlusion import draw_headset, occlude_upper

OCCLUSIONS = ("none", "upper-half")


def _post_info(post) -> dict:
    if post.identity:
        return {"prior": "train", "prior_tau": None, "classes": None}
    return {"prior": post.prior if isinstance(post.prior, str) else "custom", "prior_tau": post.tau,
            "classes": None if post.mask is None else [c for c, m in zip(post.classes, post.mask) if m]}


def evaluate(model, data: FaceSet, occlusion: str = "none", tta_flip: bool = False, post=None) -> dict:
    """Test `model` on `data`; occlusion 'upper-half' blacks out the top half of every face first.
    post: a vrfer.inference.postprocess.PostProcess (--prior, --classes) applied to the probabilities, as predict does;
    None: the model's own default, as predict's (PostProcess(model.cfg)). model: a model object, or a trained
    model's name, file or run folder (an architecture name is refused: vrfer.inference.loader.torch_model)."""
    from .inference.loader import torch_model
    from .inference.postprocess import PostProcess
    model = torch_model(model)
    if occlusion not in OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {OCCLUSIONS}")
    post = PostProcess(model.cfg) if post is None else post
    data = data.with_classes(model.cfg.classes)   # the faces of the model's classes, labelled in its order
    images = occlude_upper(data.images, model.cfg.occlusion) if occlusion == "upper-half" else data.images
    probs = post.apply(predict_proba(model, images, tta_flip=tta_flip))
    res = metrics(data.labels, probs.argmax(1), model.cfg.classes)
    res.update(occlusion=occlusion, tta_flip=tta_flip, data_fingerprint=data.fingerprint(), **_post_info(post))
    return res


FOLDER_OCCLUSIONS = OCCLUSIONS + ("headset",)


def folder_faces(model, root, face: str = "none", occlusion: str = "none", skip_bad: bool = False,
                 threads: int | None = None, progress: bool = True):
    """The face crops of a labelled folder (vrfer.datasets.folder), read and cropped through predict's path
    (read, find the face or take the image as the crop, FER+-framed crop). With face="detect" the
    wearer's face is used (the first, vrfer.faces.wearer_first: the rule of every answer); an image where none
    is found is counted in `no_face`. occlusion: "upper-half" blacks out the top of each crop; "headset" paints
    vrfer's synthetic headset (vrfer.occlusion.draw_headset) over the eyes of the whole photo before the face is
    looked for, placed from the wearer's face in the clean photo (with face="none": from the whole image). A bad
    row or unreadable image stops with one line naming it, unless skip_bad. Returns (items, crops (M, 48, 48),
    found (N,) bool, rec, info): items are the folder's rows that could be read (N), crops those of the rows
    where a face was found."""
    import hashlib

    from tqdm import tqdm

    from .datasets.folder import read_labels
    from .recognizer import Recognizer, load_image
    if occlusion not in FOLDER_OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {FOLDER_OCCLUSIONS}")
    items, bad = read_labels(root, skip_bad)
    # the plain float32 probabilities: the caller applies the post-processing (prior, classes) once
    rec = Recognizer(model, face=face, backend="torch", threads=threads, prior="train")
    kept, crops, found, no_face = [], [], [], []
    digest = hashlib.sha256()
    # the bar only on a terminal (as predict's video bar), and cleared before a message that stops the read
    with tqdm(items, desc="reading faces", disable=None if progress else True, leave=False,
              mininterval=1.0) as bar:
        for it in bar:
            try:
                img = load_image(it.path)
                # the photos as they are on disk: the fingerprint names the data, not how vrfer drew on it
                raw = np.ascontiguousarray(img).tobytes()
                if occlusion == "headset":
                    ref = rec.find_faces(img)
                    h, w = img.shape[:2]
                    if ref or face != "detect":
                        box = ref[0].box if face == "detect" else (0, 0, w, h)     # the wearer
                        img = draw_headset(img, box)
                faces = rec.find_faces(img)
            except VrferError as e:
                bad(f"{it.where} ({it.path.name})", str(e), "unreadable_image")
                continue
            kept.append(it)
            digest.update(raw)
            if not faces:
                no_face.append(it.path.name)
                found.append(False)
                continue
            found.append(True)
            crops.append(rec.crops(img, faces[:1])[0])      # the wearer (wearer_first)
    if not kept:
        raise VrferError(f"{root}: no image could be evaluated")
    crops = np.stack(crops) if crops else np.zeros((0, 48, 48), np.uint8)
    if occlusion == "upper-half" and len(crops):
        crops = occlude_upper(crops, rec.cfg.occlusion)
    digest.update(np.asarray([it.label for it in kept], np.int64).tobytes())
    info = {"occlusion": occlusion, "face": face, "no_face": len(no_face), "no_face_files": no_face[:20],
            "skipped": dict(bad.counts), "data_fingerprint": digest.hexdigest()[:16]}
    return kept, crops, np.array(found, bool), rec, info


def predict_folder(model, root, face: str = "none", occlusion: str = "none", skip_bad: bool = False,
                   threads: int | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and class probabilities of a labelled folder (folder_faces); an image where no face is
    found gets a row of NaN probabilities. Returns (labels (N,), probs (N, 8), info)."""
    items, crops, found, rec, info = folder_faces(model, root, face, occlusion, skip_bad, threads, progress)
    probs = np.full((len(items), len(rec.cfg.classes)), np.nan)
    if len(crops):  # classified in batches, as evaluate() does: the same probabilities, far faster
        probs[found] = np.concatenate([rec.classify(crops[i:i + 256]) for i in range(0, len(crops), 256)])
    return np.array([it.label for it in items], np.int64), probs, info


def evaluate_folder(model, root, face: str = "none", occlusion: str = "none", skip_bad: bool = False,
                    threads: int | None = None, progress: bool = True, post=None) -> dict:
    """Test `model` on a labelled folder (see predict_folder); a face not found counts as wrong.
    post: a vrfer.inference.postprocess.PostProcess (--prior, --classes) applied to the probabilities, as predict does;
    None: the model's own default, as predict's."""
    from .inference.loader import torch_model
    from .inference.postprocess import PostProcess
    model = torch_model(model)
    if tuple(model.cfg.classes) != CLASSES:   # a folder's labels.csv is read in vrfer's class order
        raise VrferError(f"evaluating a labelled folder takes a model of vrfer's classes ({', '.join(CLASSES)}); "
                         f"{model.cfg.name} answers with {', '.join(model.cfg.classes)}")
    post = PostProcess(model.cfg) if post is None else post
    labels, probs, info = predict_folder(model, root, face, occlusion, skip_bad, threads, progress)
    found = ~np.isnan(probs).any(1)
    pred = np.full(len(labels), -1, np.int64)
    if found.any():
        pred[found] = post.apply(probs[found]).argmax(1)
    res = metrics(labels, pred)
    res.update(tta_flip=False, **info, **_post_info(post))
    return res


def confusion_png(result: dict, path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(result["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = list(result["per_class"])   # the classes scored, in the model's order
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {100 * result['accuracy']:.2f}%, mean per-class recall "
                 f"{result['mean_class_recall']:.3f} (n={result['n']})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------- per person (vrfer.personal.adapt, vrfer.personal.evaluate_personal)

def scores(labels: np.ndarray, pred: np.ndarray) -> dict:
    """metrics() without the bootstrap and the confusion matrix: accuracy, mean per-class recall, n, per class."""
    m = metrics(labels, pred)
    return {"accuracy": m["accuracy"], "mean_class_recall": m["mean_class_recall"], "n": m["n"],
            "per_class": m["per_class"]}


def subjects_of(items) -> np.ndarray:
    """The person in each photo of a labelled folder (labels.csv `subject`); VrferError where one is missing."""
    subjects = np.array([it.subject for it in items])
    if (subjects == "").all():
        raise VrferError("adaptation and calibration need a `subject` column in labels.csv (the person in each "
                         "photo): a person is never scored by a fit that saw them")
    if (subjects == "").any():
        it = items[int(np.flatnonzero(subjects == "")[0])]
        raise VrferError(f"{it.where}: no `subject` (adaptation and calibration need the person in each photo)")
    return subjects
