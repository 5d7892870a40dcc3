"""Accuracy with a bootstrap interval, per-class recall and a confusion matrix (also as PNG).

Accuracy alone hides the rare classes a VR scene most needs (fear, anger, disgust, sadness), so every
result also carries the mean per-class recall over the classes present in the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import CLASSES
from .datasets.base import FaceSet
from .inference import predict_proba
from .occlusion import occlude_upper

OCCLUSIONS = ("none", "upper-half")


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of a 0/1 vector (seeded: deterministic)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), (n_boot, len(correct)))
    means = correct[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def metrics(labels: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy (95% bootstrap CI), per-class recall, mean per-class recall over the classes present,
    and the confusion matrix. pred may hold -1 (no answer, e.g. no face found): it counts as wrong."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    correct = (pred == labels).astype(np.float64)
    k = len(CLASSES)
    cm = np.zeros((k, k), np.int64)
    answered = pred >= 0
    np.add.at(cm, (labels[answered], pred[answered]), 1)
    support = np.bincount(labels, minlength=k)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(CLASSES)}
    lo, hi = bootstrap_ci(correct)
    return {"accuracy": float(correct.mean()), "n": int(len(correct)), "ci95": [lo, hi],
            "mean_class_recall": float(np.mean([v for v in per_class.values() if v is not None])),
            "per_class": per_class, "support": {c: int(s) for c, s in zip(CLASSES, support)},
            "predicted_share": {c: float(v) for c, v in zip(CLASSES, cm.sum(0) / max(1, len(labels)))},
            "confusion": cm.tolist()}


def _post_info(post) -> dict:
    if post.identity:
        return {"prior": "train", "prior_tau": None, "classes": None}
    return {"prior": post.prior if isinstance(post.prior, str) else "custom", "prior_tau": post.tau,
            "classes": None if post.mask is None else [c for c, m in zip(post.classes, post.mask) if m]}


def evaluate(model, data: FaceSet, occlusion: str = "none", tta_flip: bool = False, post=None) -> dict:
    """Test `model` on `data`; occlusion 'upper-half' blacks out the top half of every face first.
    post: a vrfer.postprocess.PostProcess (--prior, --classes) applied to the probabilities, as predict does;
    None: the model's own default, as predict's (PostProcess(model.cfg))."""
    from .postprocess import PostProcess
    if occlusion not in OCCLUSIONS:
        raise ValueError(f"occlusion must be one of {OCCLUSIONS}")
    post = PostProcess(model.cfg) if post is None else post
    images = occlude_upper(data.images, model.cfg.occlusion) if occlusion == "upper-half" else data.images
    probs = post.apply(predict_proba(model, images, tta_flip=tta_flip))
    res = metrics(data.labels, probs.argmax(1))
    res.update(occlusion=occlusion, tta_flip=tta_flip, data_fingerprint=data.fingerprint(), **_post_info(post))
    return res


FOLDER_OCCLUSIONS = OCCLUSIONS + ("headset",)


def folder_faces(model, root, face: str = "none", occlusion: str = "none", skip_bad: bool = False,
                 threads: int | None = None, progress: bool = True):
    """The face crops of a labelled folder (vrfer.datasets.folder), read and cropped through predict's path
    (read, find the face or take the image as the crop, FER+-framed crop). With face="detect" the
    best-scoring face is used; an image where none is found is counted in `no_face`. occlusion: "upper-half"
    blacks out the top of each crop; "headset" paints vrfer's synthetic headset (vrfer.faces.draw_headset)
    over the eyes of the whole photo before the face is looked for, placed from the face found in the clean
    photo (with face="none": from the whole image). A bad row or unreadable image stops with one line naming
    it, unless skip_bad. Returns (items, crops (M, 48, 48), found (N,) bool, rec, info): items are the
    folder's rows that could be read (N), crops those of the rows where a face was found."""
    import hashlib

    from tqdm import tqdm

    from .datasets.folder import read_labels
    from .errors import VrferError
    from .faces import draw_headset
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
                if occlusion == "headset":
                    ref = rec.find_faces(img)
                    h, w = img.shape[:2]
                    if ref or face != "detect":
                        box = max(ref, key=lambda f: f.score).box if face == "detect" else (0, 0, w, h)
                        img = draw_headset(img, box)
                faces = rec.find_faces(img)
            except VrferError as e:
                bad(f"{it.where} ({it.path.name})", str(e), "unreadable_image")
                continue
            kept.append(it)
            digest.update(np.ascontiguousarray(img).tobytes())
            if not faces:
                no_face.append(it.path.name)
                found.append(False)
                continue
            found.append(True)
            crops.append(rec.crops(img, [max(faces, key=lambda f: f.score)])[0])
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
    probs = np.full((len(items), len(CLASSES)), np.nan)
    if len(crops):  # classified in batches, as evaluate() does: the same probabilities, far faster
        probs[found] = np.concatenate([rec.classify(crops[i:i + 256]) for i in range(0, len(crops), 256)])
    return np.array([it.label for it in items], np.int64), probs, info


def evaluate_folder(model, root, face: str = "none", occlusion: str = "none", skip_bad: bool = False,
                    threads: int | None = None, progress: bool = True, post=None) -> dict:
    """Test `model` on a labelled folder (see predict_folder); a face not found counts as wrong.
    post: a vrfer.postprocess.PostProcess (--prior, --classes) applied to the probabilities, as predict does;
    None: the model's own default, as predict's."""
    from .models.registry import as_model
    from .postprocess import PostProcess
    model = as_model(model)
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
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
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


# ------------------------------------------------------------- adaptation and calibration, scored honestly

def _scores(labels: np.ndarray, pred: np.ndarray) -> dict:
    m = metrics(labels, pred)
    return {"accuracy": m["accuracy"], "mean_class_recall": m["mean_class_recall"], "n": m["n"],
            "per_class": m["per_class"]}


def _spread(runs: list[dict]) -> dict:
    """Mean and standard deviation over draws of accuracy, mean per-class recall and per-class recall."""
    out = {k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "mean_class_recall")}
    out.update({f"{k}_sd": float(np.std([r[k] for r in runs])) for k in ("accuracy", "mean_class_recall")})
    out["n"] = int(np.mean([r["n"] for r in runs]))
    out["per_class"] = {c: (None if any(r["per_class"][c] is None for r in runs)
                            else float(np.mean([r["per_class"][c] for r in runs]))) for c in CLASSES}
    return out


MIN_ENROLLED_CLASSES = 3     # a calibration is scored only where it enrolled at least this many classes


def _people(items) -> np.ndarray:
    from .errors import VrferError
    subjects = np.array([it.subject for it in items])
    if (subjects == "").any():
        raise VrferError("adaptation and calibration need a `subject` column in labels.csv (the person in each "
                         "photo): a person is never scored by a fit that saw them")
    return subjects


def evaluate_personal(model, root, face: str = "none", occlusion: str = "none", adapt: str | None = None,
                      calibrate: int | None = None, draws: int = 5, seed: int = 0, post=None, skip_bad: bool = False,
                      threads: int | None = None, progress: bool = True, log=None) -> dict:
    """Adaptation and calibration of `model`, scored so that no face is scored by a fit that saw it.

    adapt="loo": each person's faces are scored by an adaptation (vrfer.adapt: AdaBN + a new last layer)
    fitted on the other people only, beside the generic answer on the same faces.
    calibrate=K: per person and enrolment session, K faces per class drawn (seeded, `draws` times) from that
    ONE session make a profile (vrfer.calibration), scored on the person's OTHER sessions only, among the
    enrolled classes, beside the unprofiled answer on the same faces. A session of one class only (e.g.
    taiwanese-dev's neutral photos, taken apart from the others) is added to every enrolment and never
    scored. Without a `session` column all of a person's photos are one sitting: K faces per class are
    enrolled and the person's other photos scored, which flatters calibration (the result says so).
    An enrolment of fewer than MIN_ENROLLED_CLASSES classes is not scored. K=0: every face of the session (video-like enrolment).
    With both, the profile is made on top of the person's leave-one-out adapted model.
    Faces where no face was found are left out of these figures (counted in no_face).
    log: a function taking one line of progress (or None)."""
    from .errors import VrferError
    from .models.registry import as_model
    from .postprocess import PostProcess
    from .representation import logits_and_features
    if adapt not in (None, "loo"):
        raise VrferError(f"--adapt {adapt!r}: expected loo")
    if calibrate is not None and calibrate < 0:
        raise VrferError(f"--calibrate {calibrate}: expected K >= 0 faces per class (0: all of the session)")
    if draws < 1:
        raise VrferError(f"--draws {draws}: expected at least 1")
    model = as_model(model)
    items, crops, found, rec, info = folder_faces(model, root, face, occlusion, skip_bad, threads, progress)
    items = [it for it, f in zip(items, found) if f]
    data = _people_sessions(items)
    labels, subjects = data["labels"], data["subjects"]
    res = {"n": int(len(labels)), "people": int(len(np.unique(subjects))), **info}
    generic_post = PostProcess(model.cfg) if post is None else post
    logits, feats = logits_and_features(model, crops)
    generic_pred = generic_post.apply(logits, logits=True).argmax(1)
    res["generic"] = _scores(labels, generic_pred)
    say = log or (lambda _line: None)
    say(f"generic answer: {100 * res['generic']['accuracy']:.2f}% on {len(labels)} faces of {res['people']} people")

    per_person = {}     # person -> (model, logits, feats, post, faces) the calibration starts from
    if adapt == "loo":
        pred, per_person = _adapt_loo(model, crops, labels, subjects, post)
        res["adapted_loo"] = _scores(labels, pred)
        say(f"adapted, leave-one-person-out: {100 * res['adapted_loo']['accuracy']:.2f}%")
    if calibrate is None:
        return res

    def starts(person, own):
        return per_person.get(person) or (model, logits[own], feats[own], generic_post, own)

    runs_base, runs_cal, pairs = _calibration_draws(data, starts, calibrate, draws, seed)
    base_name = "adapted_loo" if adapt == "loo" else "generic"
    res["calibration"] = {
        "k": calibrate, "draws": draws if calibrate else 1, "seed": seed, "starts_from": base_name,
        "sessions": "none in labels.csv: enrol from the person's photos, score their other photos (one sitting: "
                    "flatters calibration)"
                    if data["no_sessions"] else "enrol from one session, score the person's other sessions",
        "always_enrolled_sessions": sorted(data["one_class"]), "enrolments": len(pairs),
        "unprofiled": _spread(runs_base), "calibrated": _spread(runs_cal)}
    say(f"calibrated (K={calibrate}): {100 * res['calibration']['calibrated']['accuracy']:.2f}% against "
        f"{100 * res['calibration']['unprofiled']['accuracy']:.2f}% unprofiled on the same faces")
    return res


def _people_sessions(items) -> dict:
    """The labelled faces' labels, people, sessions (without a `session` column: each photo its own) and file
    names, whether there were sessions, and the sessions of one class only (always enrolled, never scored)."""
    labels = np.array([it.label for it in items], np.int64)
    sessions = np.array([it.session for it in items])
    no_sessions = bool((sessions == "").all())
    if no_sessions:
        sessions = np.array([it.path.name for it in items])
    one_class = set() if no_sessions else \
        {s for s in np.unique(sessions) if len(np.unique(labels[sessions == s])) == 1}
    return {"labels": labels, "subjects": _people(items), "sessions": sessions, "no_sessions": no_sessions,
            "files": np.array([it.path.name for it in items]), "one_class": one_class}


def _adapt_loo(model, crops, labels, subjects, post):
    """Each person's faces scored by an adaptation (vrfer.adapt) fitted on the other people only: the predictions,
    and per person (adapted model, logits, representations, post-processing, the person's face indices)."""
    from .adapt import adapt_arrays
    from .postprocess import PostProcess
    from .representation import logits_and_features
    pred, per_person = np.zeros_like(labels), {}
    for person in np.unique(subjects):
        fit = subjects != person
        m = adapt_arrays(model, crops[fit], labels[fit])
        lg, ft = logits_and_features(m, crops[~fit])
        p = PostProcess(m.cfg, None if post is None else post.prior, None if post is None else post.tau,
                        None if post is None or post.subset is None else post.subset)
        pred[~fit] = p.apply(lg, logits=True).argmax(1)
        per_person[person] = (m, lg, ft, p, np.flatnonzero(~fit))
    return pred, per_person


def _calibration_draws(data: dict, starts, calibrate: int, draws: int, seed: int):
    """evaluate_personal's calibration, `draws` times (seeded): per draw the unprofiled and the calibrated scores
    on the same faces, and the first draw's enrolments (person, session, enrolled, scored). starts(person, own):
    the (model, logits, representations, post-processing, face indices) a person's profiles start from."""
    from .calibration import enrol
    from .errors import VrferError
    labels, subjects, sessions = data["labels"], data["subjects"], data["sessions"]
    rng = np.random.default_rng(seed)
    runs_base, runs_cal, pairs = [], [], []
    for draw in range(draws if calibrate else 1):
        base_pred, cal_pred, truth = [], [], []
        for person in np.unique(subjects):
            own = np.flatnonzero(subjects == person)
            m, lg, ft, p, idx = starts(person, own)
            pos = {int(i): k for k, i in enumerate(idx)}
            for s in ([None] if data["no_sessions"] else np.unique(sessions[own])):
                split = None if s in data["one_class"] else _enrolment(data, own, s, calibrate, rng)
                if split is None:
                    continue
                enrolled, scored = split
                prof = enrol(m, ft[[pos[int(i)] for i in enrolled]], labels[enrolled])
                z = lg[[pos[int(i)] for i in scored]]
                f = ft[[pos[int(i)] for i in scored]]
                base_pred.append(p.apply(z, logits=True).argmax(1))
                cal_pred.append(p.apply(prof.apply(z, f, m.cfg.classes), logits=True).argmax(1))
                truth.append(labels[scored])
                if draw == 0:
                    pairs.append((person, s, len(enrolled), len(scored)))
        if not truth:
            raise VrferError("no person has a face to score outside the enrolment session (calibration needs "
                             "two sessions, or two photos of an expression, per person)")
        t = np.concatenate(truth)
        runs_base.append(_scores(t, np.concatenate(base_pred)))
        runs_cal.append(_scores(t, np.concatenate(cal_pred)))
    return runs_base, runs_cal, pairs


def _enrolment(data: dict, own, s, calibrate: int, rng):
    """One enrolment of a person (faces `own`) from session s (None: one sitting, the person's photos): K faces
    per class drawn, and the faces it is scored on. (enrolled, scored) indices, or None when it is not scored
    (fewer than MIN_ENROLLED_CLASSES classes enrolled, or no face left to score)."""
    labels, sessions, one_class, files = data["labels"], data["sessions"], list(data["one_class"]), data["files"]
    # one sitting (no session column): enrol from the person's photos, score the others
    pool = own if s is None else own[(sessions[own] == s) | np.isin(sessions[own], one_class)]
    enrolled = []
    for c in np.unique(labels[pool]):
        cand = pool[labels[pool] == c]
        k = len(cand) if not calibrate else min(calibrate, len(cand))
        enrolled += list(rng.choice(cand, k, replace=False))
    enrolled = np.array(sorted(enrolled))
    classes = np.unique(labels[enrolled])
    if len(classes) < MIN_ENROLLED_CLASSES:
        return None     # scored among one or two classes, any push towards them looks like a gain
    other = ~np.isin(own, enrolled) if s is None else (sessions[own] != s) & ~np.isin(sessions[own], one_class)
    scored = own[other & np.isin(labels[own], classes)]
    if not len(scored):
        return None
    # the rule of the protocol: no scored photo is an enrolled one or from the enrolled session
    assert not set(files[scored]) & set(files[enrolled])
    assert s is None or s not in set(sessions[scored])
    return enrolled, scored
