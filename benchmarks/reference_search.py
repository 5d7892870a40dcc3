"""Issue 31: designs of the referenced head (vrfer.personal.reference), each chosen honestly and scored leave-one-dataset-out
(LODO) and, on top of adaptation, leave-one-person-out (LOPO).

Every hyperparameter (lam, blend) of a variant is chosen by nested leave-one-person-out INSIDE the fitting data set
(fit on its other people, score each person against their own neutral reference; the best mean accuracy over the
grid), never on the scored set; then the head is fitted on the whole fitting set and scored on the other set. The same
rule both ways. The arithmetic is `vrfer evaluate --dataset folder --root DATA --face detect --occlusion headset
--model HEAD --reference neutral --adapt loo`'s: the shipped design's row and "as evaluate" reproduce its figures
(docs/RESULTS.md, "The wearer's neutral reference (issue 31)", where every row is reported).

    OMP_NUM_THREADS=1 nice python benchmarks/reference_search.py --data ../shared/data [--json OUT] \
        [--part lodo|adapted|neutral|headset] [--designs NAME ...]

(one BLAS thread: the small L-BFGS fits are ~10x faster than with threads fighting over a busy machine; all parts
~40 min on 2 shared cores, the first run longer: it detects the faces and adapts once per person.)

Representations are cached under ~/.cache/vrfer/reference_search (the pipeline's crops with the synthetic headset,
the generic model's representation of each crop and of its mirror image, and for each person the leave-that-person-out
adapted model's representations of both data sets), keyed by the model's fingerprint and the data's labels.csv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vrfer.personal.adapt import adapt_arrays
from vrfer.evaluate import folder_faces, scores
from vrfer.personal.evaluate_personal import _people_sessions
from vrfer.inference.loader import resolve, torch_model
from vrfer.inference.postprocess import PostProcess, softmax
from vrfer.personal.reference import (
    NEUTRAL,
    REFERENCE_BLEND,
    REFERENCE_L2,
    ReferencedHead,
    leave_one_out_references,
)
from vrfer.inference.representation import fit_head, head, logits_and_features

SETS = ("taiwanese-dev", "jaffe")
LAMS = (0.001, 0.003, 0.01, 0.03, 0.1)
BLENDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _pass(model, crops):
    lg, ft = logits_and_features(model, crops)
    flg, fft = logits_and_features(model, np.ascontiguousarray(crops[:, :, ::-1]))
    return lg, ft, flg, fft


def load(model, root: Path, fingerprint: str, occlusion: str = "headset") -> dict:
    """The data set's crops, labels, people, sessions and the generic model's logits / representations (and of the
    mirrored crops), cached. occlusion "none": the clean photos' crops (evaluate's `--occlusion none`)."""
    cache = Path.home() / ".cache" / "vrfer" / "reference_search"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256((fingerprint + (root / "labels.csv").read_text()).encode()).hexdigest()[:16]
    f = cache / (f"{root.name}-{key}.npz" if occlusion == "headset" else f"{root.name}-{occlusion}-{key}.npz")
    if not f.exists():
        items, crops, found, _, info = folder_faces(model, root, "detect", occlusion)
        items = [it for it, ok in zip(items, found) if ok]
        d = _people_sessions(items)
        lg, ft, flg, fft = _pass(model, crops)
        np.savez(f, crops=crops, labels=d["labels"], subjects=d["subjects"], sessions=d["sessions"],
                 no_sessions=d["no_sessions"], lg=lg, ft=ft, flg=flg, fft=fft,
                 data_fingerprint=info["data_fingerprint"])
    d = dict(np.load(f))
    d["no_sessions"] = bool(d["no_sessions"])
    d["name"] = root.name
    return d


AUG_COPIES = 6


def augmented(model, d: dict, fingerprint: str, copies: int = AUG_COPIES,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(copies, N, D) representations of d's crops (and of their mirror images) as if each person had been filmed in
    `copies` other setups: per copy and person one light (gamma 0.6-1.6, contrast 0.7-1.3, brightness -20..20) and
    softness (Gaussian blur sigma 0-1.2), and per face a small shift (+-2 px) and scale (+-6%) of the crop. Cached."""
    import cv2
    cache = Path.home() / ".cache" / "vrfer" / "reference_search"
    key = hashlib.sha256((fingerprint + str(d["data_fingerprint"]) + f"{copies}-{seed}").encode()).hexdigest()[:16]
    f = cache / f"aug-{d['name']}-{key}.npz"
    if not f.exists():
        rng = np.random.default_rng(seed)
        crops, subj = d["crops"], d["subjects"]
        fts, ffts = [], []
        for _ in tqdm(range(copies), desc=f"augmented setups of {d['name']}", unit="copy"):
            light = {p: (rng.uniform(0.6, 1.6), rng.uniform(0.7, 1.3), rng.uniform(-20, 20), rng.uniform(0, 1.2))
                     for p in np.unique(subj)}
            out = np.empty_like(crops)
            for i, (c, p) in enumerate(zip(crops, subj)):
                g, k, bright, sigma = light[p]
                n = c.shape[0]
                sc, dx, dy = rng.uniform(0.94, 1.06), rng.uniform(-2, 2), rng.uniform(-2, 2)
                M = np.array([[sc, 0, (1 - sc) * n / 2 + dx], [0, sc, (1 - sc) * n / 2 + dy]])
                x = cv2.warpAffine(c, M, (n, n), borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255
                x = x ** g
                x = (x - x.mean()) * k + x.mean() + bright / 255
                if sigma > 0.3:
                    x = cv2.GaussianBlur(x, (0, 0), sigma)
                out[i] = np.clip(x * 255 + 0.5, 0, 255).astype(crops.dtype)
            _, ft, _, fft = _pass(model, out)
            fts.append(ft)
            ffts.append(fft)
        np.savez(f, ft=np.stack(fts), fft=np.stack(ffts))
    z = np.load(f)
    return z["ft"], z["fft"]


def load_adapted(model, sets: dict, name: str, fingerprint: str) -> dict:
    """For each person of `name`: the adaptation fitted on the other people of `name` (vrfer.personal.adapt.adapt_arrays, as
    `--adapt loo` fits it), and its logits / representations of every crop of every data set (and mirrored)."""
    cache = Path.home() / ".cache" / "vrfer" / "reference_search"
    d = sets[name]
    key = hashlib.sha256((fingerprint + "".join(str(sets[s]["data_fingerprint"]) for s in SETS)).encode()).hexdigest()[:16]
    f = cache / f"adapted-{name}-{key}.npz"
    if not f.exists():
        out = {}
        for person in tqdm(np.unique(d["subjects"]), desc=f"adapting {name}, leave-one-person-out", unit="person"):
            fit = d["subjects"] != person
            m = adapt_arrays(model, d["crops"][fit], d["labels"][fit])
            for s in SETS:
                for k, v in zip(("lg", "ft", "flg", "fft"), _pass(m, sets[s]["crops"])):
                    out[f"{person}|{s}|{k}"] = v
            out[f"{person}|W"] = head(m).weight.detach().numpy()
            out[f"{person}|b"] = head(m).bias.detach().numpy()
        np.savez(f, **out)
    z = np.load(f)
    res: dict = {}
    for k in z.files:
        person, *rest = k.split("|")
        res.setdefault(person, {})["|".join(rest)] = z[k]
    return res


# ------------------------------------------------------------------------------------------- designs of the head

def _neutral(d):
    return d["labels"] == 0


def refs_of(ft, fft, d, rows, mirror_ref: bool, sessions: bool):
    """Each face's reference (rows of d): the mean of the person's OTHER neutral faces (other sessions where
    `sessions`), of the representation or, with mirror_ref, of the mean of it and its mirror image's."""
    x = (ft + fft) / 2 if mirror_ref else ft
    return leave_one_out_references(x[rows], d["subjects"][rows], _neutral(d)[rows],
                                    d["sessions"][rows] if sessions and not d["no_sessions"] else None)


def spread_of(ft, d, rows, kind="spread3", sessions: bool = False):
    """Each face's person scale, from the person's OTHER neutral faces (other sessions where `sessions`):
    "spreadK": their RMS distance from their mean (NaN where the person has fewer than K such faces);
    "norm": the length of their mean (the reference's length)."""
    subj, neu = d["subjects"][rows], _neutral(d)[rows]
    sess = d["sessions"][rows] if sessions and not d["no_sessions"] else None
    x = ft[rows]
    out = np.full(len(x), np.nan)
    least = 1 if kind == "norm" else int(kind[-1])
    for p in np.unique(subj):
        own = np.flatnonzero(subj == p)
        for i in own:
            pool = own[neu[own] & (own != i) & (True if sess is None else sess[own] != sess[i])]
            if len(pool) >= least:
                m = x[pool].mean(0)
                out[i] = np.linalg.norm(m) if kind == "norm" else np.sqrt(((x[pool] - m) ** 2).sum(1).mean())
    return out


def features(design, ft, fft, d, rows, sessions: bool, scale0: float):
    """(x, x_mirrored): what the head reads for the faces `rows` of data set d under `design` (NaN rows: no
    reference)."""
    if design.get("mirror_ref"):
        r = refs_of(ft, fft, d, rows, True, sessions)
        x = (ft[rows] + fft[rows]) / 2 - r if design.get("tta") else ft[rows] - r
        xm = x if design.get("tta") else fft[rows] - r
    else:           # as vrfer.personal.reference: a mirrored face against the mirrored faces' reference
        x = ft[rows] - refs_of(ft, fft, d, rows, False, sessions)
        xm = fft[rows] - refs_of(fft, fft, d, rows, False, sessions)
    if design.get("scale"):
        s = spread_of(ft, d, rows, design["scale"], sessions)[:, None] / scale0
        x, xm = x / s, xm / s
    return x, xm


def fit(design, W0, b0, parts, lam):
    """The head's (W, b) fitted on parts [(ft, fft, d, rows)] (each face read against its person's other neutral
    faces, all sessions, as vrfer.personal.reference.fit_head_on_people), pulled towards (W0, b0)."""
    xs, ys = [], []
    for ft, fft, d, rows in parts:
        views = [(ft, fft)]
        if design.get("aug") and "aug" in d:     # the same people in other setups, each against its own reference
            views += [(a, b) for a, b in zip(*d["aug"])][:design["aug"]]
        for vft, vfft in views:
            x, xm = features(design, vft, vfft, d, rows, False, design["scale0"])
            y = d["labels"][rows]
            for v in ([x, xm] if design.get("mirror", True) else [x]):
                ok = np.isfinite(v).all(1)
                xs.append(v[ok])
                ys.append(y[ok])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return fit_head(x, y, W0, b0, lam, rows=sorted(set(y.tolist())), iters=500)


def predict(design, Wb, blend, z, ft, fft, d, rows, post, sessions: bool = True):
    """The referenced answer (class indices) of faces `rows`, scored against their person's other neutral faces
    (other sessions, as evaluate), blended with logits z (rows'); a face without reference keeps z's answer."""
    x, _ = features(design, ft, fft, d, rows, sessions, design["scale0"])
    h = ReferencedHead(Wb[0], Wb[1], blend)
    return post.apply(softmax(_blend(h, z, x))).argmax(1)


def _blend(h: ReferencedHead, z, x):
    """ReferencedHead.logits with the difference f - r given (x; NaN rows keep z)."""
    return h.logits(z, np.where(np.isfinite(x), x, 0.0), np.where(np.isfinite(x), 0.0, np.nan))


def nested_choice(design, W0, b0, d, ft, fft, z, post, fit_src=None):
    """(lam, blend, LOPO accuracy grid) chosen by leave-one-person-out inside d; fit_src: the (ft, fft) the heads
    are fitted on where not d's own (the same faces otherwise read: the clean photos' crops)."""
    fit_ft, fit_fft = fit_src or (ft, fft)
    people = np.unique(d["subjects"])
    acc = np.zeros((len(LAMS), len(BLENDS)))
    for i, lam in enumerate(LAMS):
        preds = {b: np.zeros(len(d["labels"]), np.int64) for b in BLENDS}
        for p in people:
            out = d["subjects"] == p
            Wb = fit(design, W0, b0, [(fit_ft, fit_fft, d, np.flatnonzero(~out))], lam)
            for b in BLENDS:
                preds[b][out] = predict(design, Wb, b, z[out], ft, fft, d, np.flatnonzero(out), post,
                                        "floor" not in design)
        for j, b in enumerate(BLENDS):
            acc[i, j] = scores(d["labels"], preds[b])["mean_class_recall"] if design.get("criterion") == "mcr" \
                else (preds[b] == d["labels"]).mean()
            neutral = d["labels"] == 0
            if (preds[b][neutral] == 0).mean() < design.get("floor", 0.0):
                acc[i, j] = -1 + acc[i, j] / 10     # below the neutral floor: chosen only if nothing reaches it
    i, j = np.unravel_index(np.argmax(acc), acc.shape)
    return LAMS[i], BLENDS[j], acc


def summary(labels, pred) -> dict:
    s = scores(labels, pred)
    return {"accuracy": round(100 * s["accuracy"], 2), "mean_class_recall": round(s["mean_class_recall"], 3),
            "neutral_recall": round(s["per_class"][NEUTRAL], 2)}


DESIGNS = {
    "shipped (lam 0.01, blend 0.7 fixed)": {"fixed": (REFERENCE_L2, REFERENCE_BLEND)},
    "nested lam/blend": {},
    "nested, mirrored reference": {"mirror_ref": True},
    "nested, mirrored reference + test-time flip": {"mirror_ref": True, "tta": True},
    "nested, per-person scale (spread of 3+ other neutral faces)": {"scale": "spread3"},
    "nested, per-person scale (spread of 2+ other neutral faces)": {"scale": "spread2"},
    "nested, per-person scale (length of the reference)": {"scale": "norm"},
    "nested, no mirrored training faces": {"mirror": False},
    "nested, neutral recall >= 0.9 (every face referenced, all sessions)": {"floor": 0.9},
    "nested, neutral recall >= 0.9, mirrored reference": {"floor": 0.9, "mirror_ref": True},
    "nested by mean per-class recall": {"criterion": "mcr"},
    "nested by mean per-class recall, mirrored reference": {"criterion": "mcr", "mirror_ref": True},
    "nested, fitted on 6 augmented setups too (light, blur, crop jitter)": {"aug": 6},
    "nested, fitted on 2 augmented setups too": {"aug": 2},
    "augmented setups (6), lam 0.01 blend 0.7 as shipped (ablation, not chosen honestly)": {
        "fixed": (REFERENCE_L2, REFERENCE_BLEND), "aug": 6},
    "mirrored reference, lam 0.01 blend 0.7 as shipped (ablation, not chosen honestly)": {
        "fixed": (REFERENCE_L2, REFERENCE_BLEND), "mirror_ref": True},
    "nested, in FER+'s top 16 principal directions": {"fer_subspace": 16},
    "nested, in FER+'s top 32 principal directions": {"fer_subspace": 32},
    "nested, fitted on the clean photos (no headset drawn)": {"fit_clean": True},
    "nested, fitted on the clean photos, neutral recall >= 0.9": {"fit_clean": True, "floor": 0.9},
    "fitted on the clean photos, lam 0.01 blend 0.7 as shipped (not chosen honestly)": {
        "fixed": (REFERENCE_L2, REFERENCE_BLEND), "fit_clean": True},
    "top 16 FER+ directions, lam 0.01 blend 0.7 as shipped (ablation, not chosen honestly)": {
        "fixed": (REFERENCE_L2, REFERENCE_BLEND), "fer_subspace": 16},
    "top 32 FER+ directions, lam 0.01 blend 0.7 as shipped (ablation, not chosen honestly)": {
        "fixed": (REFERENCE_L2, REFERENCE_BLEND), "fer_subspace": 32},
}


def fer_projection(model, data: Path, fingerprint: str, k: int) -> np.ndarray:
    """(384, 384) projection onto the top k principal directions of the representation of FER+ train (majority
    rule; the network's own training faces, so the head's differences are read only along what FER+ varies in,
    not along what the fitting setup alone varies in). W @ P is again a head of the shipped shape."""
    cache = Path.home() / ".cache" / "vrfer" / "reference_search" / f"ferplus-train-{fingerprint[:16]}.npy"
    if not cache.exists():
        from vrfer.datasets.ferplus import load_ferplus
        fs = load_ferplus(data / "ferplus", "train")
        np.save(cache, logits_and_features(model, fs.images)[1])
    f = np.load(cache).astype(np.float64)
    _, v = np.linalg.eigh(np.cov(f - f.mean(0), rowvar=False))
    v = v[:, ::-1][:, :k]
    return (v @ v.T).astype(np.float32)


def lodo(model, sets, post, say, only=None, data: Path | None = None, fingerprint: str = "") -> dict:
    layer = head(model)
    W0, b0 = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    out = {}
    for name, design in DESIGNS.items():
        if only and name not in only:
            continue
        row = {}
        for fit_on, scored in (("jaffe", "taiwanese-dev"), ("taiwanese-dev", "jaffe")):
            A, B = sets[fit_on], sets[scored]
            if design.get("fer_subspace"):
                P = fer_projection(model, data, fingerprint, design["fer_subspace"])
                A, B = ({**X, "ft": X["ft"] @ P, "fft": X["fft"] @ P} for X in (A, B))
            dz = dict(design)
            dz["scale0"] = float(np.nanmedian(spread_of(A["ft"], A, np.arange(len(A["labels"])), design["scale"]))) \
                if design.get("scale") else 1.0
            F = A
            if design.get("fit_clean"):     # the head fitted on the fitting people's clean photos, read behind the headset
                F = load(model, data / fit_on, fingerprint, "none")
                assert (F["labels"] == A["labels"]).all() and (F["subjects"] == A["subjects"]).all()
            if "fixed" in design:
                lam, blend, grid = *design["fixed"], None
            else:
                lam, blend, grid = nested_choice(dz, W0, b0, A, A["ft"], A["fft"], A["lg"], post, (F["ft"], F["fft"]))
            Wb = fit(dz, W0, b0, [(F["ft"], F["fft"], A, np.arange(len(A["labels"])))], lam)
            pred = predict(dz, Wb, blend, B["lg"], B["ft"], B["fft"], B, np.arange(len(B["labels"])), post)
            row[scored] = {**summary(B["labels"], pred), "fitted_on": fit_on, "lam": lam, "blend": blend,
                           "nested_best": None if grid is None else round(100 * grid.max(), 2)}
        out[name] = row
        say(f"{name}: " + "; ".join(f"{s} {r['accuracy']}% / {r['mean_class_recall']} / {r['neutral_recall']} "
                                    f"(lam {r['lam']}, blend {r['blend']})" for s, r in row.items()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--model", default="vrfer-lower")
    ap.add_argument("--json", default=None)
    ap.add_argument("--part", choices=["lodo", "adapted", "neutral", "headset", "all"], default="all",
                    help="headset: what vrfer's synthetic headset costs the shipped design (not part of all)")
    ap.add_argument("--designs", nargs="*", default=None, help="only these LODO designs (their names)")
    a = ap.parse_args()
    model = torch_model(a.model)
    fp = resolve(a.model, "torch").fingerprint or "?"
    sets = {s: load(model, Path(a.data) / s, fp) for s in SETS}
    if a.part in ("lodo", "all") and any(DESIGNS[n].get("aug") for n in (a.designs or DESIGNS)):
        for s in SETS:
            sets[s]["aug"] = augmented(model, sets[s], fp)
    post = PostProcess(model.cfg)
    res = {}
    if a.part in ("lodo", "all"):
        res["lodo"] = lodo(model, sets, post, print, a.designs, Path(a.data), fp)
    if a.part in ("adapted", "all"):
        res["adapted"] = adapted_lopo(model, sets, fp, print)
    if a.part in ("neutral", "all"):
        res["adapted_neutral"] = adapted_neutral(model, sets, fp, print)
    if a.part == "headset":
        res["headset"] = headset_cost(model, Path(a.data), fp, print)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


ADAPTED_DESIGNS = {
    "as evaluate (lam 0.01, blend 0.7, with the adapted logits)": {"fixed": (REFERENCE_L2, REFERENCE_BLEND)},
    "lam/blend chosen on the other data set's LOPO": {},
    "chosen on the other set, blended with the generic logits": {"generic_z": True},
    "chosen on the other set, fitted on the other people + the other data set": {"pool": True},
    "chosen on the other set, head on the generic representation": {"generic_f": True},
}


def _adapted_grid(design, sets, adapted, name, W0, b0, post, lams, blends):
    """LOPO predictions of `name` for each (lam, blend): person p scored by the referenced head fitted on the
    other people (through p's leave-out adaptation), blended with p's adapted (or the generic) logits."""
    d = sets[name]
    other = next(s for s in SETS if s != name)
    preds = {(lam, b): np.zeros(len(d["labels"]), np.int64) for lam in lams for b in blends}
    for p, a in adapted.items():
        out = d["subjects"] == p
        src = {s: ((sets[s]["ft"], sets[s]["fft"]) if design.get("generic_f") else (a[f"{s}|ft"], a[f"{s}|fft"]))
               for s in SETS}
        Wa, ba = (W0, b0) if design.get("generic_f") else (a["W"], a["b"])
        z = d["lg"][out] if design.get("generic_z") else a[f"{name}|lg"][out]
        parts = [(*src[name], d, np.flatnonzero(~out))]
        if design.get("pool"):
            parts.append((*src[other], sets[other], np.arange(len(sets[other]["labels"]))))
        rows = np.flatnonzero(out)
        # a face without a reference is answered by the adapted model (what it answers without one)
        bare = ~np.isfinite(features(design, *src[name], d, rows, True, design["scale0"])[0]).all(1)
        for lam in lams:
            Wb = fit(design, Wa, ba, parts, lam)
            for b in blends:
                pr = predict(design, Wb, b, z, *src[name], d, rows, post)
                pr[bare] = post.apply(a[f"{name}|lg"][out][bare], logits=True).argmax(1)
                preds[lam, b][out] = pr
    return preds


def adapted_lopo(model, sets, fp, say) -> dict:
    """Adapted + referenced, leave-one-person-out on each data set: each person's faces scored by the adaptation
    fitted on the other people (vrfer.personal.adapt.adapt_arrays, as `vrfer evaluate --adapt loo`) and a referenced head
    fitted on the other people's adapted representation; lam and blend chosen on the OTHER data set's LOPO grid."""
    layer = head(model)
    W0, b0 = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    adapted = {s: load_adapted(model, sets, s, fp) for s in SETS}
    post = PostProcess(adapted_config_of(model))
    out = {"adapted alone": {s: summary(sets[s]["labels"], _adapted_alone(sets[s], adapted[s], post)) for s in SETS}}
    say(f"adapted alone: {out['adapted alone']}")
    for name, design in ADAPTED_DESIGNS.items():
        dz = {**design, "scale0": 1.0}
        lams, blends = ([design["fixed"][0]], [design["fixed"][1]]) if "fixed" in design else (LAMS, BLENDS)
        grids = {s: _adapted_grid(dz, sets, adapted[s], s, W0, b0, post, lams, blends) for s in SETS}
        row = {}
        for s in SETS:
            chooser = s if "fixed" in design else next(o for o in SETS if o != s)
            acc = {k: (v == sets[chooser]["labels"]).mean() for k, v in grids[chooser].items()}
            lam, b = max(acc, key=acc.get)
            row[s] = {**summary(sets[s]["labels"], grids[s][lam, b]), "lam": lam, "blend": b, "chosen_on": chooser}
        out[name] = row
        say(f"{name}: " + "; ".join(f"{s} {r['accuracy']}% / {r['mean_class_recall']} / {r['neutral_recall']} "
                                    f"(lam {r['lam']}, blend {r['blend']})" for s, r in row.items()))
    return out


def adapted_neutral(model, sets, fp, say, shifts=(0.0, 0.5, 1.0, 1.5, 2.0)) -> dict:
    """Why adaptation answers neutral rarely on taiwanese-dev: the adapted model's answers on the neutral faces
    (leave-one-person-out), its mean P(neutral) on neutral and other faces, and accuracy / neutral recall when the
    neutral logit is raised by a constant (not a design: it shows the prior the adaptation learnt)."""
    out = {}
    for s in SETS:
        d, adapted = sets[s], load_adapted(model, sets, s, fp)
        z = np.zeros((len(d["labels"]), len(model.cfg.classes)))
        for p, a in adapted.items():
            z[d["subjects"] == p] = a[f"{s}|lg"][d["subjects"] == p]
        neu = d["labels"] == 0
        prob = softmax(z)
        row = {"neutral_share": round(float(neu.mean()), 3),
               "answers_on_neutral_faces": dict(zip(model.cfg.classes, np.bincount(z[neu].argmax(1), minlength=len(
                   model.cfg.classes)).tolist())),
               "mean_p_neutral": {"neutral faces": round(float(prob[neu, 0].mean()), 3),
                                  "other faces": round(float(prob[~neu, 0].mean()), 3)}}
        for c in shifts:
            pred = (z + np.eye(z.shape[1])[0] * c).argmax(1)
            row[f"neutral logit +{c}"] = {"accuracy": round(100 * float((pred == d["labels"]).mean()), 2),
                                          "neutral_recall": round(float((pred[neu] == 0).mean()), 2)}
        out[s] = row
        say(f"{s}, adapted (LOPO): {row}")
    return out


# ------------------------------------------------------------------------------- what the synthetic headset costs

HEADSET_CONDITIONS = {
    "clean": "the clean photo, its own face crop (the model still reads only the lower half)",
    "headset pixels, clean crop": "the photo with vrfer's headset, cropped where the clean photo's face is",
    "headset (as evaluate)": "the photo with vrfer's headset, cropped where the face found on it is",
}
BANDS = (24, 26, 28, 30)     # rows of the 48-row crop painted headset-dark from the top (24: the model's own half)


def headset_crops(model, root: Path) -> dict:
    """Each photo's three crops (HEADSET_CONDITIONS), through evaluate's own steps (vrfer.evaluate.folder_faces:
    the headset drawn from the wearer's box on the clean photo, the face found again on the headset photo)."""
    from vrfer.datasets.folder import read_labels
    from vrfer.occlusion import draw_headset
    from vrfer.recognizer import Recognizer, load_image
    rec = Recognizer(model, face="detect", backend="torch", prior="train")
    items, _ = read_labels(root)
    kept, crops = [], {k: [] for k in HEADSET_CONDITIONS}
    for it in tqdm(items, desc=root.name, mininterval=5):
        img = load_image(it.path)
        clean = rec.find_faces(img)
        if not clean:
            continue
        worn = draw_headset(img, clean[0].box)
        found = rec.find_faces(worn)
        if not found:
            continue
        kept.append(it)
        for k, (im, f) in zip(HEADSET_CONDITIONS, ((img, clean), (worn, clean), (worn, found))):
            crops[k].append(rec.crops(im, f[:1])[0])
    d = dict(_people_sessions(kept))
    d["no_sessions"], d["name"] = bool(d["no_sessions"]), root.name
    d["crops"] = {k: np.stack(v) for k, v in crops.items()}
    return d


def headset_cost(model, data: Path, fingerprint: str, say) -> dict:
    """The shipped design (lam 0.01, blend 0.7), leave-one-dataset-out, on the three crops of each photo and with
    the top rows of every crop painted headset-dark down to each of BANDS; and, on the crops as evaluate cuts them,
    the faces whose read half the headset reaches (a pixel changed by more than 8 of 255 against the clean photo,
    same crop) against those it does not."""
    sets = {s: headset_crops(model, data / s) for s in SETS}
    for s, d in sets.items():     # headset_crops repeats evaluate's steps: they must give evaluate's very crops
        for cond, occlusion in (("clean", "none"), ("headset (as evaluate)", "headset")):
            if not np.array_equal(d["crops"][cond], load(model, data / s, fingerprint, occlusion)["crops"]):
                raise SystemExit(f"{s}: the {cond!r} crops differ from vrfer.evaluate.folder_faces' "
                                 f"(--occlusion {occlusion}): mend headset_crops")
    post = PostProcess(model.cfg)
    layer = head(model)
    W0, b0 = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    design = {"scale0": 1.0}
    for d in sets.values():
        a, b = (d["crops"][k][:, 24:].astype(int) for k in ("clean", "headset pixels, clean crop"))
        d["reached"] = (np.abs(a - b) > 8).any((1, 2))
    out = {}
    for cond in HEADSET_CONDITIONS:
        for band in BANDS:
            if band != 24 and cond == "headset pixels, clean crop":
                continue
            for d in sets.values():
                c = d["crops"][cond].copy()
                c[:, :band] = np.minimum(c[:, :band], 29)       # vrfer's headset colour (28, 28, 32) in gray
                d["lg"], d["ft"], _, d["fft"] = _pass(model, c)
            row = {}
            for fit_on, scored in (("jaffe", "taiwanese-dev"), ("taiwanese-dev", "jaffe")):
                A, B = sets[fit_on], sets[scored]
                Wb = fit(design, W0, b0, [(A["ft"], A["fft"], A, np.arange(len(A["labels"])))], REFERENCE_L2)
                pred = predict(design, Wb, REFERENCE_BLEND, B["lg"], B["ft"], B["fft"], B,
                               np.arange(len(B["labels"])), post)
                ok, r = pred == B["labels"], B["reached"]
                row[scored] = {"generic": summary(B["labels"], post.apply(softmax(B["lg"])).argmax(1)),
                               "referenced": summary(B["labels"], pred),
                               "referenced, read half reached": [round(100 * float(ok[r].mean()), 2), int(r.sum())],
                               "referenced, not reached": [round(100 * float(ok[~r].mean()), 2), int((~r).sum())]}
            name = cond if band == 24 else f"{cond}, dark down to row {band} of 48"
            out[name] = row
            say(f"{name}: " + "; ".join(f"{s} generic {r['generic']['accuracy']}%, referenced {r['referenced']} "
                                        f"(reached {r['referenced, read half reached']}, not "
                                        f"{r['referenced, not reached']})" for s, r in row.items()))
    return out


def adapted_config_of(model):
    from vrfer.personal.adapt import adapted_config
    return adapted_config(model, "adapted", {}, np.arange(len(model.cfg.classes)))


def _adapted_alone(d, adapted, post):
    pred = np.zeros(len(d["labels"]), np.int64)
    for p, a in adapted.items():
        out = d["subjects"] == p
        pred[out] = post.apply(a[f"{d['name']}|lg"][out], logits=True).argmax(1)
    return pred


if __name__ == "__main__":
    main()
