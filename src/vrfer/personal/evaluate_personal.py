"""Adaptation to a setup and calibration to a person, scored honestly on a labelled folder of people
(`vrfer evaluate --dataset folder --adapt loo --enrol K`): no face is ever scored by a fit that saw its
person (adaptation, leave-one-person-out) or its session (calibration)."""

from __future__ import annotations

import numpy as np

from ..inference.postprocess import PostProcess, softmax
from ..evaluate import folder_faces, scores, subjects_of
from ..outputs import plural
from ..errors import VrferError
from ..inference.loader import torch_model
from ..inference.representation import head as last_layer, logits_and_features
from .reference import fit_head_on_people, head_of, person_references
from .adapt import adapt_arrays
from .calibration import enrol


def _spread(runs: list[dict]) -> dict:
    """Mean and standard deviation over draws of accuracy, mean per-class recall and per-class recall."""
    out = {k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "mean_class_recall")}
    out.update({f"{k}_sd": float(np.std([r[k] for r in runs])) for k in ("accuracy", "mean_class_recall")})
    out["n"] = int(np.mean([r["n"] for r in runs]))
    out["per_class"] = {c: (None if any(r["per_class"][c] is None for r in runs)
                            else float(np.mean([r["per_class"][c] for r in runs]))) for c in runs[0]["per_class"]}
    return out


MAX_DRAWS = 100              # --draws: each draw refits every person's profiles
MIN_ENROLLED_CLASSES = 3     # a calibration is scored only where it enrolled at least this many classes


def evaluate_personal(model, root, face: str = "none", occlusion: str = "none", adapt: str | None = None,
                      calibrate: int | None = None, draws: int = 5, seed: int = 0, post=None, skip_bad: bool = False,
                      threads: int | None = None, progress: bool = True, log=None,
                      reference: str | None = None) -> dict:
    """Adaptation and calibration of `model`, scored so that no face is scored by a fit that saw it.

    adapt="loo": each person's faces are scored by an adaptation (vrfer.personal.adapt: AdaBN + a new last layer)
    fitted on the other people only, beside the generic answer on the same faces.
    calibrate=K: per person and enrolment session, K faces per class drawn (seeded, `draws` times) from that
    ONE session make a profile (vrfer.personal.calibration), scored on the person's OTHER sessions only, among the
    enrolled classes, beside the unprofiled answer on the same faces. A session of one class only (e.g.
    taiwanese-dev's neutral photos, taken apart from the others) is added to every enrolment and never
    scored. Without a `session` column all of a person's photos are one sitting: K faces per class are
    enrolled and the person's other photos scored, which flatters calibration (the result says so).
    An enrolment of fewer than MIN_ENROLLED_CLASSES classes is not scored. K=0: every face of the session (video-like enrolment).
    With both, the profile is made on top of the person's leave-one-out adapted model.
    Faces where no face was found are left out of these figures (counted in no_face).
    reference="neutral"|"auto": also the answer read against each person's reference (_score_referenced); with
    adapt="loo", each adaptation also fits a referenced head on the other people (`adapted_loo_referenced`).
    log: a function taking one line of progress (or None)."""
    _check_options(adapt, calibrate, draws, seed, reference)
    model = torch_model(model)
    head = _referenced_head(model) if reference else None
    items, crops, found, rec, info = folder_faces(model, root, face, occlusion, skip_bad, threads, progress)
    items = [it for it, f in zip(items, found) if f]
    data = _people_sessions(items)
    labels, subjects = data["labels"], data["subjects"]
    res = {"n": int(len(labels)), "people": int(len(np.unique(subjects))), **info}
    generic_post = PostProcess(model.cfg) if post is None else post
    logits, feats = logits_and_features(model, crops)
    generic_pred = generic_post.apply(logits, logits=True).argmax(1)
    res["generic"] = scores(labels, generic_pred)
    say = log or (lambda _line: None)
    say(f"generic answer: {100 * res['generic']['accuracy']:.2f}% on {plural(len(labels), 'face')} of {plural(res['people'], 'person')}")

    if reference:
        _score_referenced(res, head, reference, logits, feats, data, generic_post, info, model.cfg.classes, say)

    if adapt == "loo" and res["people"] < 2:
        raise VrferError(f"--adapt loo fits on the other people: {root} has faces of {plural(res['people'], 'person')} "
                         "(its subject column)")
    if calibrate:
        _check_k(calibrate, data)
    per_person = {}     # person -> (model, logits, feats, post, faces) the calibration starts from
    if adapt == "loo":
        pred, per_person, pred_ref = _adapt_loo(model, crops, labels, subjects, post, reference,
                                                None if data["no_sessions"] else data["sessions"], progress)
        res["adapted_loo"] = scores(labels, pred)
        if pred_ref is not None:
            res["adapted_loo_referenced"] = scores(labels, pred_ref)
        say(f"adapted, leave-one-person-out: {100 * res['adapted_loo']['accuracy']:.2f}%" + (
            f"; adapted + referenced: {100 * res['adapted_loo_referenced']['accuracy']:.2f}%" if reference else ""))
    if calibrate is None:
        return res

    def starts(person, own):
        return per_person.get(person) or (model, logits[own], feats[own], generic_post, own)

    runs_base, runs_cal, pairs = _calibration_draws(data, starts, calibrate, draws, seed, progress)
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


def _check_options(adapt, calibrate, draws, seed, reference) -> None:
    """evaluate_personal's options, each refused in one line naming it."""
    if adapt not in (None, "loo"):
        raise VrferError(f"--adapt {adapt!r}: expected loo")
    if calibrate is not None and calibrate < 0:
        raise VrferError(f"--enrol {calibrate}: expected K >= 0 faces per class (0: all of the session)")
    if isinstance(draws, bool) or not isinstance(draws, int) or not 1 <= draws <= MAX_DRAWS:
        raise VrferError(f"--draws {draws}: expected a whole number from 1 to {MAX_DRAWS}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise VrferError(f"--seed {seed}: expected a whole number >= 0")   # was: numpy's ValueError, "internal"
    if reference not in (None, "neutral", "auto"):
        raise VrferError(f"--reference {reference!r}: expected neutral or auto")


def _check_k(calibrate: int, data: dict) -> None:
    """VrferError when K exceeds the most faces of one class in one session (one person, without sessions)."""
    labels, subjects = data["labels"], data["subjects"]
    most = max((int(np.sum((subjects == p) & (labels == c) & (data["sessions"] == s)))
                for p, c, s in set(zip(subjects.tolist(), labels.tolist(), data["sessions"].tolist()))), default=0)
    if data["no_sessions"]:
        most = max((int(np.sum((subjects == p) & (labels == c))) for p, c in set(zip(subjects.tolist(),
                    labels.tolist()))), default=0)
    if calibrate > most:
        raise VrferError(f"--enrol {calibrate}: this folder has at most {most} faces of one class in one "
                         f"{'person' if data['no_sessions'] else 'session'}; give K up to {most} (0: all)")


def _referenced_head(model):
    """The model's referenced head (vrfer.personal.reference); VrferError when it has none."""
    head = head_of(model.cfg, last_layer(model).in_features)
    if head is None:
        raise VrferError(f"model {model.cfg.name!r} has no referenced head: --reference needs one "
                         "(tools/fit_reference_head.py, or vrfer adapt on a folder with neutral photos)")
    return head


def _score_referenced(res: dict, head, reference: str, logits, feats, data: dict, post, info: dict, classes,
                      say) -> None:
    """evaluate_personal's referenced answer: each face read against its person's reference (vrfer.personal.reference),
    taken from that person's OTHER photos only (other sessions where labels.csv has them; neutral: their neutral
    photos; auto: those the generic answer calls confidently neutral, no labels); a face with no such photo keeps the
    generic answer (counted in no_reference). The result's top-level accuracy, mean_class_recall and per_class
    become the referenced answer's (`generic` holds the plain one on the same faces); `head_saw_this_data` says
    whether the model's referenced head was fitted on this very data (by its data fingerprint)."""
    labels, subjects = data["labels"], data["subjects"]
    sessions = None if data["no_sessions"] else data["sessions"]
    refs = person_references(feats, logits, labels, subjects, sessions, reference, classes)
    pred = post.apply(softmax(head.logits(logits, feats, refs))).argmax(1)
    saw = sorted(d.get("data", "?") for d in head.fitted_on if d.get("data_fingerprint") == info["data_fingerprint"])
    res["referenced"] = {**scores(labels, pred), "reference": reference,
                         "no_reference": int((~np.isfinite(refs).all(axis=1)).sum()),
                         "head_fitted_on": [d.get("data", "?") for d in head.fitted_on], "blend": head.blend}
    res["head_saw_this_data"] = bool(saw)
    res.update({k: res["referenced"][k] for k in ("accuracy", "mean_class_recall", "per_class")})
    say(f"referenced ({reference}): {100 * res['accuracy']:.2f}% on the same faces"
        + (" (the head was fitted on this data: not an honest figure)" if saw else ""))


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
    return {"labels": labels, "subjects": subjects_of(items), "sessions": sessions, "no_sessions": no_sessions,
            "files": np.array([it.path.name for it in items]), "one_class": one_class}


def _adapt_loo(model, crops, labels, subjects, post, reference=None, sessions=None, progress: bool = False):
    """Each person's faces scored by an adaptation (vrfer.personal.adapt) fitted on the other people only: the predictions,
    per person (adapted model, logits, representations, post-processing, the person's face indices), and with
    `reference` the predictions of the adapted model with a referenced head also fitted on the other people
    (vrfer.personal.reference.fit_head_on_people, on the adapted representation), else None."""
    from tqdm import tqdm

    pred, per_person = np.zeros_like(labels), {}
    pred_ref = np.zeros_like(labels) if reference else None
    for person in tqdm(np.unique(subjects), desc="adapt, leave-one-person-out", unit="person", leave=False,
                       disable=None if progress else True):
        fit = subjects != person
        m = adapt_arrays(model, crops[fit], labels[fit])
        lg, ft = logits_and_features(m, crops[~fit])
        p = PostProcess(m.cfg, None if post is None else post.prior, None if post is None else post.tau,
                        None if post is None or post.subset is None else post.subset)
        pred[~fit] = p.apply(lg, logits=True).argmax(1)
        per_person[person] = (m, lg, ft, p, np.flatnonzero(~fit))
        if reference:
            ft_fit = logits_and_features(m, crops[fit])[1]
            ft_mirror = logits_and_features(m, np.ascontiguousarray(crops[fit][:, :, ::-1]))[1]
            head = fit_head_on_people(m, ft_fit, labels[fit], subjects[fit], ft_mirror)
            refs = person_references(ft, lg, labels[~fit], subjects[~fit],
                                     None if sessions is None else sessions[~fit], reference, m.cfg.classes)
            pred_ref[~fit] = p.apply(softmax(head.logits(lg, ft, refs))).argmax(1)
    return pred, per_person, pred_ref


def _calibration_draws(data: dict, starts, calibrate: int, draws: int, seed: int, progress: bool = False):
    """evaluate_personal's calibration, `draws` times (seeded): per draw the unprofiled and the calibrated scores
    on the same faces, and the first draw's enrolments (person, session, enrolled, scored). starts(person, own):
    the (model, logits, representations, post-processing, face indices) a person's profiles start from."""
    from tqdm import tqdm

    labels, subjects, sessions = data["labels"], data["subjects"], data["sessions"]
    rng = np.random.default_rng(seed)
    runs_base, runs_cal, pairs = [], [], []
    people = np.unique(subjects)
    bar = tqdm(total=(draws if calibrate else 1) * len(people), desc="calibration draws x people", unit="person",
               leave=False, disable=None if progress else True)
    for draw in range(draws if calibrate else 1):
        base_pred, cal_pred, truth = [], [], []
        for person in people:
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
            bar.update(1)
        if not truth:
            raise VrferError("no person has a face to score outside the enrolment session (calibration needs "
                             "two sessions, or two photos of an expression, per person)")
        t = np.concatenate(truth)
        runs_base.append(scores(t, np.concatenate(base_pred)))
        runs_cal.append(scores(t, np.concatenate(cal_pred)))
    bar.close()
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
