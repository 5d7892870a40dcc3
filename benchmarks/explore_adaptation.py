"""Exploring adaptation (leave-one-person-out) and calibration (K=1, across sessions) of vrfer-lower on
taiwanese-dev and JAFFE, with vrfer's synthetic headset over the eyes, on the network's representation.

Protocols mirror vrfer.personal.evaluate_personal.evaluate_personal: a person is never scored by a fit that saw them (adaptation:
AdaBN and the head are fitted on the other people); calibration enrols K=1 face per class from ONE session (+ the
'neutral' session, always enrolled, never scored) and scores the person's OTHER sessions among the enrolled classes,
5 seeded draws. Rows marked (transd.) also use the scored person's own UNLABELLED faces (all their photos, every
class): per-person AdaBN statistics or a per-person mean; they are honest only as transductive figures.

    cd /work/wtexp && taskset -c 1 .venv/bin/python benchmarks/explore_adaptation.py            # everything
    taskset -c 1 .venv/bin/python benchmarks/explore_adaptation.py --only adapt|calib|finetune|first-frames|pernorm|unlabelled|spatial|mirror|ceiling

Crops and representations are cached under $VRFER_EXPLORE_CACHE (default /tmp/exp; never in the data folder).
First run ~10 min on one core (crops, 15+10 AdaBN folds with and without flip), then ~5 min from the cache.
"""
import argparse, os, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)   # measurements: one thread, pinned with taskset
from vrfer.models import create_model
from vrfer.personal.adapt import adabn
from vrfer.inference.representation import fit_head
from vrfer.inference.representation import logits_and_features, head
from vrfer.inference.postprocess import PostProcess
from vrfer.evaluate import scores
from vrfer.inference.preprocess import prepare

MODEL = create_model("vrfer-lower")
LAYER = head(MODEL)
W0 = LAYER.weight.detach().numpy().astype(np.float64)
B0 = LAYER.bias.detach().numpy().astype(np.float64)
GEN_POST = PostProcess(MODEL.cfg)
GEN_SHIFT = np.zeros(8) if GEN_POST.shift is None else GEN_POST.shift
C = 8
CACHE = os.environ.get("VRFER_EXPLORE_CACHE", "/tmp/exp")
DATA = os.environ.get("VRFER_DATA", "/work/shared/data")

def load(name):
    """crops/labels/subjects/sessions of a dataset, through predict's path (face detect, synthetic headset), cached"""
    p = f"{CACHE}/{name}.npz"
    if not os.path.exists(p):
        from vrfer.evaluate import folder_faces, subjects_of
        items, crops, found, _, _ = folder_faces(MODEL, f"{DATA}/{name}", "detect", "headset", progress=False)
        items = [it for it, f in zip(items, found) if f]
        np.savez(p, crops=crops, labels=np.array([it.label for it in items], np.int64), subjects=subjects_of(items),
                 sessions=np.array([it.session for it in items]), files=np.array([it.path.name for it in items]))
    d = np.load(f"{CACHE}/{name}.npz")
    return {k: d[k] for k in d.files}

def feats(m, crops, flip):
    _, f = logits_and_features(m, crops)
    if flip:
        _, g = logits_and_features(m, np.ascontiguousarray(crops[:, :, ::-1]))
        f = (f + g) / 2
    return f.astype(np.float64)

def cached(key, fn):
    p = f"{CACHE}/cache_{key}.npz"
    if os.path.exists(p):
        return np.load(p)["a"]
    a = fn(); np.savez(p, a=a); return a

def rep_generic(ds, name, flip):
    return cached(f"{name}_gen_f{int(flip)}", lambda: feats(MODEL, ds["crops"], flip))

def rep_fold(ds, name, flip):
    """(P, N, D): features of every face under AdaBN fitted on everyone but person p (fold p)."""
    def go():
        people = np.unique(ds["subjects"])
        out = []
        for p in people:
            m = adabn(MODEL, ds["crops"][ds["subjects"] != p])
            out.append(feats(m, ds["crops"], flip))
        return np.stack(out)
    return cached(f"{name}_fold_f{int(flip)}", go)

def rep_perperson(ds, name, flip, sel=None):
    """(N, D): each face under AdaBN fitted on its own person's faces (all of them: transductive, unlabelled)."""
    def go():
        out = np.zeros((len(ds["labels"]), 384))
        for p in np.unique(ds["subjects"]):
            i = ds["subjects"] == p
            out[i] = feats(adabn(MODEL, ds["crops"][i]), ds["crops"][i], flip)
        return out
    return cached(f"{name}_pp_f{int(flip)}", go)

def rep_all(ds, name, flip):
    """AdaBN on every face of the set (transductive: includes the scored person's unlabelled faces)."""
    return cached(f"{name}_all_f{int(flip)}", lambda: feats(adabn(MODEL, ds["crops"]), ds["crops"], flip))

def fit(X, y, W=W0, b=B0, lam=1e-2, rows=None, weights=None, iters=100, bias_only=False):
    X = torch.as_tensor(X, dtype=torch.float64); y = torch.as_tensor(y)
    Wt = torch.as_tensor(W, dtype=torch.float64); bt = torch.as_tensor(b, dtype=torch.float64)
    free = torch.ones(C, 1, dtype=torch.float64)
    if rows is not None:
        free = torch.zeros_like(free); free[list(rows)] = 1.0
    wt = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    dW = torch.zeros_like(Wt, requires_grad=True); db = torch.zeros_like(bt, requires_grad=True)
    params = [db] if bias_only else [dW, db]
    opt = torch.optim.LBFGS(params, max_iter=iters, line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad()
        z = X @ (Wt + free * dW).T + bt + free[:, 0] * db
        if wt is None:
            loss = F.cross_entropy(z, y)
        else:
            loss = (F.cross_entropy(z, y, reduction="none") * wt).sum() / wt.sum()
        loss = loss + lam * ((free * dW) ** 2).sum()
        loss.backward(); return loss
    opt.step(closure)
    with torch.no_grad():
        return (Wt + free * dW).numpy(), (bt + free[:, 0] * db).numpy()

def balanced_weights(y):
    cnt = np.bincount(y, minlength=C).astype(float)
    return 1.0 / cnt[y]

def score(labels, logits):
    s = scores(labels, np.asarray(logits).argmax(1))
    return s["accuracy"], s["mean_class_recall"]

# ---------------------------------------------------------------- calibration protocol (evaluate_personal's)
def enrolments(ds, rng, k=1, min_classes=3):
    """One draw of evaluate_personal's enrolments (same rng sequence): per person and non-neutral session, K faces per
    class from that session (+ the one-class sessions), scored on the person's other sessions among those classes.
    Yields (person, pool, enrolled, scored), indices into ds."""
    labels, subjects, sessions = ds["labels"], ds["subjects"], ds["sessions"]
    one_class = {s for s in np.unique(sessions) if len(np.unique(labels[sessions == s])) == 1}
    for person in np.unique(subjects):
        own = np.flatnonzero(subjects == person)
        for s in np.unique(sessions[own]):
            if s in one_class:
                continue
            pool = own[(sessions[own] == s) | np.isin(sessions[own], list(one_class))]
            enrolled = []
            for c in np.unique(labels[pool]):
                cand = pool[labels[pool] == c]
                enrolled += list(rng.choice(cand, min(k, len(cand)), replace=False))
            enrolled = np.array(sorted(enrolled))
            classes = np.unique(labels[enrolled])
            if len(classes) < min_classes:
                continue
            other = (sessions[own] != s) & ~np.isin(sessions[own], list(one_class))
            scored = own[other & np.isin(labels[own], classes)]
            if len(scored):
                yield person, pool, enrolled, scored

def calib_eval(ds, per_person, cal_fn, k=1, draws=5, seed=0, min_classes=3):
    """per_person: person -> dict(idx=indices into ds (own faces), F=features (len(idx),D), Z=base logits
    (len(idx),C) before post, shift=post shift (C,), W,b = running head).  cal_fn(ctx) -> calibrated logits of
    the scored faces (before the shift). Mirrors vrfer.personal.evaluate_personal.evaluate_personal (same rng sequence)."""
    labels, sessions = ds["labels"], ds["sessions"]
    rng = np.random.default_rng(seed)
    rb, rc = [], []
    for draw in range(draws):
        bp, cp, tr = [], [], []
        for person, pool, enrolled, scored in enrolments(ds, rng, k, min_classes):
                pp = per_person[person]
                pos = {int(i): j for j, i in enumerate(pp["idx"])}
                ei = [pos[int(i)] for i in enrolled]; si = [pos[int(i)] for i in scored]
                ctx = dict(Fe=pp["F"][ei], ye=labels[enrolled], Fs=pp["F"][si], Zs=pp["Z"][si], W=pp["W"], b=pp["b"],
                           Fall=pp["F"], rows=sorted(set(labels[enrolled].tolist())), shift=pp["shift"],
                           sess_e=sessions[enrolled], Fsess=pp["F"][[pos[int(i)] for i in pool]], G=pp.get("G"), Wc=pp.get("Wc"), bc=pp.get("bc"))
                z = cal_fn(ctx)
                bp.append((pp["Z"][si] + pp["shift"]).argmax(1)); cp.append((z + pp["shift"]).argmax(1)); tr.append(labels[scored])
        t = np.concatenate(tr)
        rb.append(scores(t, np.concatenate(bp))); rc.append(scores(t, np.concatenate(cp)))
    m = lambda rs, key: float(np.mean([r[key] for r in rs]))
    return m(rb, "accuracy"), m(rc, "accuracy"), m(rb, "mean_class_recall"), m(rc, "mean_class_recall")

def cal_l2sp(lam=0.1, **kw):
    def f(ctx):
        W, b = fit(ctx["Fe"], ctx["ye"], ctx["W"], ctx["b"], lam=lam, rows=ctx["rows"], **kw)
        z = ctx["Zs"].copy(); r = ctx["rows"]
        z[:, r] = ctx["Fs"] @ W[r].T + b[r]
        return z
    return f

def fit2(X, y, W, b, lam=0.1, lam_b=None, rows=None, iters=100, fix_bias=False):
    """fit() with an L2 pull on the bias too: lam * ||W-W0||^2 + lam_b * ||b-b0||^2 (lam_b None: bias free)."""
    X = torch.as_tensor(X, dtype=torch.float64); y = torch.as_tensor(y)
    Wt = torch.as_tensor(W, dtype=torch.float64); bt = torch.as_tensor(b, dtype=torch.float64)
    free = torch.ones(C, 1, dtype=torch.float64)
    if rows is not None:
        free = torch.zeros_like(free); free[list(rows)] = 1.0
    dW = torch.zeros_like(Wt, requires_grad=True); db = torch.zeros_like(bt, requires_grad=True)
    opt = torch.optim.LBFGS([dW] if fix_bias else [dW, db], max_iter=iters, line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad()
        z = X @ (Wt + free * dW).T + bt + free[:, 0] * db
        loss = F.cross_entropy(z, y) + lam * ((free * dW) ** 2).sum()
        if lam_b is not None:
            loss = loss + lam_b * ((free[:, 0] * db) ** 2).sum()
        loss.backward(); return loss
    opt.step(closure)
    with torch.no_grad():
        return (Wt + free * dW).numpy(), (bt + free[:, 0] * db).numpy()


# ---------------------------------------------------------------- adaptation variants

def cb_mean(F, y):
    """class-balanced mean: mean over classes of the class means"""
    return np.mean([F[y == c].mean(0) for c in np.unique(y)], 0)

def loo(ds, reps, lam=1e-2, centre=None, l2norm=False, balanced=False, zscore=False):
    """reps: (P,N,D) fold features or (N,D) shared. centre: None | 'mean' (plain mean of the person's faces,
    transductive) | 'cb' (class-balanced mean, for the training people; scored person uses plain mean)."""
    y, S = ds["labels"], ds["subjects"]; people = np.unique(S)
    Z = np.zeros((len(y), C))
    for j, p in enumerate(people):
        X = reps[j] if reps.ndim == 3 else reps
        X = X.copy(); tr = S != p
        if centre:
            g = X[tr].mean(0)
            for q in people:
                i = S == q
                mu = cb_mean(X[i], y[i]) if (centre == "cb" and q != p) else X[i].mean(0)
                X[i] = X[i] - mu + g
        if l2norm:
            s = np.linalg.norm(X[tr], axis=1).mean()
            X = s * X / np.linalg.norm(X, axis=1, keepdims=True)
        if zscore:
            mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
            X = (X - mu) / sd
            W, b = fit(X[tr], y[tr], np.zeros_like(W0), np.zeros_like(B0), lam=lam,
                       weights=balanced_weights(y[tr]) if balanced else None)
        else:
            W, b = fit(X[tr], y[tr], lam=lam, weights=balanced_weights(y[tr]) if balanced else None)
        Z[~tr] = X[~tr] @ W.T + b
    return score(y, Z)


def loo2(ds, reps, lam=0.1, sp=False, centre=False, gen_beta=0.0, Rg=None, balanced=False):
    """z-scored features (training people's stats); L2 towards 0 (sp=False) or towards the generic layer expressed
    in the z-scored space (sp=True: W0*sd, b0 + W0.mu). centre: per-person mean subtraction (transductive)."""
    y, S = ds["labels"], ds["subjects"]; people = np.unique(S)
    Z = np.zeros((len(y), C))
    for j, p in enumerate(people):
        X = (reps[j] if reps.ndim == 3 else reps).copy(); tr = S != p
        if centre:
            g = X[tr].mean(0)
            for q in people:
                i = S == q; X[i] = X[i] - X[i].mean(0) + g
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
        Xz = (X - mu) / sd
        Wi, bi = (W0 * sd, B0 + W0 @ mu) if sp else (np.zeros_like(W0), np.zeros_like(B0))
        W, b = fit(Xz[tr], y[tr], Wi, bi, lam=lam, weights=balanced_weights(y[tr]) if balanced else None)
        Z[~tr] = Xz[~tr] @ W.T + b
        if gen_beta:
            Z[~tr] += gen_beta * (Rg[~tr] @ W0.T + B0)
    return score(y, Z)


# ---------------------------------------------------------------- calibration variants

def class_means(F, y):
    G = np.zeros((C, F.shape[1]))
    for c in np.unique(y):
        G[c] = F[y == c].mean(0)
    return G

def person_setup(ds, R, mode, lam=1e-2, centred_head=False):
    """per-person contexts for calib_eval. mode 'generic' (R: (N,D) generic features) or 'adapted' (R: (P,N,D))."""
    y, S = ds["labels"], ds["subjects"]; people = np.unique(S); pp = {}
    for j, p in enumerate(people):
        X = R[j] if R.ndim == 3 else R
        tr = S != p; own = ~tr
        G = class_means(X[tr], y[tr])
        if mode == "generic":
            W, b, shift = W0, B0, GEN_SHIFT
        else:
            W, b = fit(X[tr], y[tr], lam=lam); shift = np.zeros(C)
        d = dict(idx=np.flatnonzero(own), F=X[own], Z=X[own] @ W.T + b, W=W, b=b, shift=shift, G=G)
        if centred_head:
            Xc = X[tr].copy(); g = G[np.unique(y[tr])].mean(0)
            for q in people:
                i = (S[tr] == q)
                if i.any():
                    Xc[i] = Xc[i] - class_means(Xc[i], y[tr][i])[np.unique(y[tr][i])].mean(0) + g
            d["Wc"], d["bc"] = fit(Xc, y[tr], W, b, lam=lam) if mode == "adapted" else fit(Xc, y[tr], W0, B0, lam=lam)
        pp[p] = d
    return pp

def offset(ctx):
    """x -> x - (class-balanced mean of the enrolment) + (the reference people's class-balanced mean over the same classes)"""
    r = ctx["rows"]
    mu_e = class_means(ctx["Fe"], ctx["ye"])[r].mean(0)
    return ctx["G"][r].mean(0) - mu_e

def cal_offset(head="run"):
    def f(ctx):
        o = offset(ctx)
        W, b = (ctx["W"], ctx["b"]) if head == "run" else (ctx["Wc"], ctx["bc"])
        return (ctx["Fs"] + o) @ W.T + b
    return f

def cal_offset_refit(lam=0.1, head="run", rows_only=True):
    def f(ctx):
        o = offset(ctx)
        W, b = (ctx["W"], ctx["b"]) if head == "run" else (ctx["Wc"], ctx["bc"])
        W2, b2 = fit(ctx["Fe"] + o, ctx["ye"], W, b, lam=lam, rows=ctx["rows"] if rows_only else None)
        z = (ctx["Fs"] + o) @ W.T + b; r = ctx["rows"]
        z[:, r] = (ctx["Fs"] + o) @ W2[r].T + b2[r]
        return z
    return f

def cal_blend(a, lam=0.1):
    g = cal_l2sp(lam)
    def f(ctx):
        return (1 - a) * ctx["Zs"] + a * g(ctx)
    return f

def cal_balanced(lam=0.1):
    def f(ctx):
        w = balanced_weights(ctx["ye"])
        W, b = fit(ctx["Fe"], ctx["ye"], ctx["W"], ctx["b"], lam=lam, rows=ctx["rows"], weights=w)
        z = ctx["Zs"].copy(); r = ctx["rows"]; z[:, r] = ctx["Fs"] @ W[r].T + b[r]; return z
    return f

def cal_bias(lam=0.1):
    def f(ctx):
        W, b = fit(ctx["Fe"], ctx["ye"], ctx["W"], ctx["b"], lam=lam, rows=ctx["rows"], bias_only=True)
        z = ctx["Zs"].copy(); r = ctx["rows"]; z[:, r] = ctx["Fs"] @ W[r].T + b[r]; return z
    return f

def cal_ncm(alpha, centre=True):
    """unprofiled logits + alpha * cosine(x - m, proto_c - m) for enrolled classes; m = enrolment class-balanced mean"""
    def f(ctx):
        r = ctx["rows"]; P = class_means(ctx["Fe"], ctx["ye"])
        m = P[r].mean(0) if centre else 0
        A = ctx["Fs"] - m; B = P[r] - m
        cos = (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (B / np.linalg.norm(B, axis=1, keepdims=True)).T
        z = ctx["Zs"].copy(); z[:, r] += alpha * cos; return z
    return f


def cal_sp2(lam, lam_b=None, fix_bias=False, use_offset=False, blend=1.0):
    def f(ctx):
        o = offset(ctx) if use_offset else 0
        W, b = fit2(ctx["Fe"] + o, ctx["ye"], ctx["W"], ctx["b"], lam, lam_b, rows=ctx["rows"], fix_bias=fix_bias)
        z = ctx["Zs"].copy(); r = ctx["rows"]
        z[:, r] = (1 - blend) * z[:, r] + blend * ((ctx["Fs"] + o) @ W[r].T + b[r]); return z
    return f


# ---------------------------------------------------------------- more than the head; the wearer's first frames

SPLIT = 21   # vrfer-cnn: features[:21] frozen (under the fold's AdaBN), features[21:] (the last block) + classifier trained

@torch.no_grad()
def _below(m, crops, flip=False):
    c = np.ascontiguousarray(crops[:, :, ::-1]) if flip else crops
    from vrfer.inference.preprocess import prepare
    return torch.cat([m.features[:SPLIT](prepare(c[i:i + 256], m.cfg)) for i in range(0, len(c), 256)])

def _tail(m, a):
    return m.classifier(m.pool(m.features[SPLIT:](a)).flatten(1))

def finetune_loo(name, configs):
    """Leave-one-person-out: fold AdaBN + the L2-SP head (current), then the last conv block and the head trained
    with Adam on the other people's faces (random flips, batch 32, seed 0) with an L2 pull to their start."""
    import copy
    ds = load(name); y, S = ds["labels"], ds["subjects"]
    preds = {k: np.zeros(len(y), int) for k in configs}
    for p in np.unique(S):
        tr = S != p
        m = adabn(MODEL, ds["crops"][tr]).eval()
        A, Af = _below(m, ds["crops"]), _below(m, ds["crops"], True)
        with torch.no_grad():
            R = m.pool(m.features[SPLIT:](A)).flatten(1).numpy()
        L = head(m)
        w, b = fit_head(R[tr], y[tr], L.weight.detach().numpy(), L.bias.detach().numpy(), 1e-2)
        with torch.no_grad():
            L.weight.copy_(torch.from_numpy(w)); L.bias.copy_(torch.from_numpy(b))
        for k, cfg in configs.items():
            mm = copy.deepcopy(m).eval()
            if cfg is not None:
                params = list(mm.features[SPLIT:].parameters()) + list(mm.classifier.parameters())
                ref = [q.detach().clone() for q in params]
                opt = torch.optim.Adam(params, lr=cfg["lr"])
                g = torch.Generator().manual_seed(0)
                Xi, yt = torch.from_numpy(np.flatnonzero(tr)), torch.from_numpy(y)
                for _ in range(cfg["epochs"]):
                    perm = Xi[torch.randperm(len(Xi), generator=g)]
                    for i in range(0, len(perm), 32):
                        idx = perm[i:i + 32]
                        fl = torch.rand(len(idx), generator=g) < 0.5
                        a = torch.where(fl[:, None, None, None], Af[idx], A[idx])
                        loss = F.cross_entropy(_tail(mm, a), yt[idx])
                        loss = loss + cfg["sp"] * sum(((q - r) ** 2).sum() for q, r in zip(params, ref))
                        opt.zero_grad(); loss.backward(); opt.step()
            with torch.no_grad():
                preds[k][~tr] = _tail(mm, A[~tr]).argmax(1).numpy()
    for k in configs:
        acc, mcr = score(y, np.eye(C)[preds[k]])
        print(f"{name:14s} {k:52s} acc {100*acc:5.1f}  mcr {100*mcr:5.1f}", flush=True)

def first_frames(name):
    """A wearer's first frames, unlabelled: 2 neutral photos per person (file order). Scored on the person's other
    photos INCLUDING their remaining neutral one, so that a push away from 'neutral' shows in its recall."""
    from vrfer.personal.adapt import adapt_arrays
    ds = load(name); y, S, Cr, files = ds["labels"], ds["subjects"], ds["crops"], ds["files"]
    people = np.unique(S)
    first = np.zeros(len(y), bool)
    for p in people:
        cand = sorted(np.flatnonzero((S == p) & (y == 0)), key=lambda i: files[i])
        if len(cand) >= 2:
            first[cand[:2]] = True
    pp_logit, pp_feat = np.zeros((len(y), C)), np.zeros((len(y), 384))
    for p in people:      # each person's faces under AdaBN on their own first frames
        own = S == p
        m = adabn(MODEL, Cr[own & first]) if (own & first).sum() >= 2 else MODEL
        pp_logit[own], pp_feat[own] = logits_and_features(m, Cr[own])
    gl = logits_and_features(MODEL, Cr)[0]
    res = {}
    def add(k, t, pr):
        res.setdefault(k, ([], [])); res[k][0].append(t); res[k][1].append(pr)
    for p in people:
        own = S == p; scored = own & ~first; others = ~own
        if not (own & first).any():
            continue
        t = y[scored]
        add("generic", t, GEN_POST.apply(gl[scored], logits=True).argmax(1))
        add("generic + AdaBN on own 2 neutral frames", t, GEN_POST.apply(pp_logit[scored], logits=True).argmax(1))
        m = adapt_arrays(MODEL, Cr[others], y[others])
        lg = logits_and_features(m, Cr[scored])[0]
        add("adapted (current)", t, PostProcess(m.cfg).apply(lg, logits=True).argmax(1))
        tr = others & ~first   # the other people's labelled faces, each under their own first frames' AdaBN
        for lam in (1e-2, 1e-1):
            w, b = fit_head(pp_feat[tr], y[tr], W0, B0, lam)
            add(f"per-person AdaBN (own 2 neutral) + head lam {lam:g}", t, (pp_feat[scored] @ w.T + b).argmax(1))
    for k, (t, pr) in res.items():
        t, pr = np.concatenate(t), np.concatenate(pr)
        s = scores(t, pr)
        print(f"{name:14s} {k:52s} acc {100*s['accuracy']:5.1f}  mcr {100*s['mean_class_recall']:5.1f}  neutral recall "
              f"{100*(pr[t == 0] == 0).mean():5.1f} ({int((t == 0).sum())})  answered neutral {100*(pr == 0).mean():4.1f}% "
              f"(true {100*(t == 0).mean():4.1f}%; {len(t)} faces)", flush=True)


def calib_pernorm(name="taiwanese-dev", k=1, draws=5, seed=0, lam=1e-2):
    """Calibration as per-person normalisation: the wearer's enrolment faces (K per class from ONE session, + the
    neutral session) re-estimate the BatchNorm statistics (AdaBN on the wearer), and the head is fitted on the other
    people of the setup, each under AdaBN on their own faces; optionally the enrolled rows refitted on top (blend
    0.5). Scored on the wearer's other sessions, beside the adapted model's unprofiled answer on the same faces
    (calib_eval's protocol and draws)."""
    ds = load(name); y, S, Cr = ds["labels"], ds["subjects"], ds["crops"]
    fold = rep_fold(ds, name, 0); pp = rep_perperson(ds, name, 0); people = list(np.unique(S))
    heads = {}
    for j, p in enumerate(people):
        tr = S != p
        heads[p] = (fit(fold[j][tr], y[tr], lam=lam), fit(pp[tr], y[tr], lam=lam))
    rng = np.random.default_rng(seed)
    runs = {"adapted, unprofiled": [], "adapted + profile (blend 0.5)": [], "AdaBN on the enrolment + per-person head": [],
            "AdaBN on the enrolment + per-person head + profile (blend 0.5)": []}
    for _ in range(draws):
        out = {kk: ([], []) for kk in runs}
        for p, _, enrolled, scored in enrolments(ds, rng, k):
                j = people.index(p)
                (Wa, ba), (Wp, bp) = heads[p]
                rows = sorted(set(y[enrolled].tolist()))
                Fa_s, Fa_e = fold[j][scored], fold[j][enrolled]
                m = adabn(MODEL, Cr[enrolled])
                Fp_s, Fp_e = feats(m, Cr[scored], False), feats(m, Cr[enrolled], False)
                def prof(Fe, Fs, W, b):
                    W2, b2 = fit(Fe, y[enrolled], W, b, lam=0.1, rows=rows)
                    W2, b2 = 0.5 * W2 + 0.5 * W, 0.5 * b2 + 0.5 * b
                    z = Fs @ W.T + b; z[:, rows] = Fs @ W2[rows].T + b2[rows]; return z
                for kk, z in (("adapted, unprofiled", Fa_s @ Wa.T + ba),
                              ("adapted + profile (blend 0.5)", prof(Fa_e, Fa_s, Wa, ba)),
                              ("AdaBN on the enrolment + per-person head", Fp_s @ Wp.T + bp),
                              ("AdaBN on the enrolment + per-person head + profile (blend 0.5)", prof(Fp_e, Fp_s, Wp, bp))):
                    out[kk][0].append(y[scored]); out[kk][1].append(z.argmax(1))
        for kk, (t, pr) in out.items():
            runs[kk].append(scores(np.concatenate(t), np.concatenate(pr)))
    for kk, rs in runs.items():
        print(f"calib K={k} {name:14s} {kk:64s} acc {100*np.mean([r['accuracy'] for r in rs]):5.1f}  "
              f"mcr {100*np.mean([r['mean_class_recall'] for r in rs]):5.1f}", flush=True)


def unlabelled(name):
    """Adaptation without labels, the generic last layer kept: AdaBN on the other people's faces of the setup (what
    `vrfer adapt --unlabelled` does; each person scored by statistics that never saw them), and (transductive) on
    every face including the scored person's."""
    ds = load(name); y = ds["labels"]; S = ds["subjects"]; people = list(np.unique(S))
    fold = rep_fold(ds, name, 0)
    z = np.zeros((len(y), C))
    for j, p in enumerate(people):
        z[S == p] = fold[j][S == p] @ W0.T + B0
    for k, logits in (("generic", rep_generic(ds, name, 0) @ W0.T + B0),
                      ("AdaBN on the other people's faces, generic layer", z),
                      ("(transd.) AdaBN on every face, generic layer", rep_all(ds, name, 0) @ W0.T + B0)):
        acc, mcr = score(y, logits + GEN_SHIFT)
        print(f"{name:14s} {k:52s} acc {100*acc:5.1f}  mcr {100*mcr:5.1f}", flush=True)


# ---------------------------------------------------------------- a head on more than the pooled representation

@torch.inference_mode()
def _maps(m, crops):
    """(N, 384, 3, 6) last feature maps of the 24x48 half and (N, 192) the third block's pooled output."""
    m.eval(); out, mid = [], []
    for i in range(0, len(crops), 256):
        x = prepare(crops[i:i + 256], m.cfg)
        for j, mod in enumerate(m.features):
            x = mod(x)
            if j == 19:                      # the third block's last ReLU, before its max-pool
                mid.append(x.mean((2, 3)))
        out.append(x)
    return torch.cat(out).numpy().astype(np.float32), torch.cat(mid).numpy().astype(np.float32)

def spatial(name, grids=((1, 1), (1, 2), (3, 1), (1, 3), (3, 2), (2, 3), (3, 3)), lams=(3e-3, 1e-2, 3e-2, 1e-1)):
    """Adaptation (leave-one-person-out, fold AdaBN as kept) with the head on the last feature maps pooled to a
    grid instead of to one cell: expressions are local (mouth corners, cheeks), and pooling to 1x1 throws away
    where. The grid head starts from the generic layer tiled / cells (the same logits) and is pulled there
    (L2-SP, lam per cell weight). Also: the pooled third block concatenated to the representation (L2 to 0)."""
    ds = load(name); y, S = ds["labels"], ds["subjects"]; people = np.unique(S)
    p = f"{CACHE}/maps_{name}.npz"
    if not os.path.exists(p):
        M, Mid = zip(*(_maps(adabn(MODEL, ds["crops"][S != q]), ds["crops"]) for q in people))
        np.savez(p, M=np.stack(M), Mid=np.stack(Mid))
    d = np.load(p); M, Mid = d["M"], d["Mid"].astype(np.float64)

    def run(R, Wi, lam, extra=None):
        Z = np.zeros((len(y), C))
        for j, q in enumerate(people):
            X, W = R[j], Wi
            if extra is not None:
                X, W = np.concatenate([X, extra[j]], 1), np.concatenate([Wi, np.zeros((C, extra.shape[-1]))], 1)
            tr = S != q
            Wf, bf = fit(X[tr], y[tr], W, B0, lam=lam)
            Z[~tr] = X[~tr] @ Wf.T + bf
        return score(y, Z)

    for gh, gw in grids:
        t = F.adaptive_avg_pool2d(torch.as_tensor(M.reshape(-1, *M.shape[-3:])), (gh, gw))
        R = t.reshape(*M.shape[:2], -1).numpy().astype(np.float64)     # channel-major: each channel's cells together
        for lam in lams:
            acc, mcr = run(R, np.repeat(W0, gh * gw, axis=1) / (gh * gw), lam)
            print(f"{name:14s} head on a {gh}x{gw} grid, lam {lam:g}{' (current)' if (gh, gw, lam) == (1, 1, 1e-2) else ''}"
                  f"{'':8s} acc {100*acc:5.1f}  mcr {100*mcr:5.1f}", flush=True)
    R = M.mean((3, 4)).astype(np.float64)
    for lam in (1e-2, 3e-2):
        acc, mcr = run(R, W0, lam, extra=Mid)
        print(f"{name:14s} representation + third block pooled, lam {lam:g}   acc {100*acc:5.1f}  mcr {100*mcr:5.1f}",
              flush=True)



# ---------------------------------------------------------------- mirrored faces as more training faces

def mirrored(name):
    """The head fitted on each training face and its mirror image (flip augmentation, as the paper trains), the
    scored faces as they are (test plain) or flip-averaged; and for calibration (taiwanese-dev), mirrored enrolment
    faces as well, from the generic model and on top of an adapted one (with and without mirrored adaptation).
    The mirror image's representation under the fold's AdaBN is 2 * flip-averaged - plain (rep_fold's caches)."""
    ds = load(name); y, S = ds["labels"], ds["subjects"]; people = list(np.unique(S))
    f0, f1 = rep_fold(ds, name, 0), rep_fold(ds, name, 1); fm = 2 * f1 - f0
    for lam in (1e-2, 3e-2):
        for mirror, test in ((False, "plain"), (True, "plain"), (True, "avg")):
            Z = np.zeros((len(y), C))
            for j, q in enumerate(people):
                tr = S != q
                X, yy = (np.concatenate([f0[j][tr], fm[j][tr]]), np.concatenate([y[tr], y[tr]])) if mirror \
                    else (f0[j][tr], y[tr])
                W, b = fit(X, yy, lam=lam)
                Z[~tr] = (f0[j] if test == "plain" else f1[j])[~tr] @ W.T + b
            acc, mcr = score(y, Z)
            print(f"{name:14s} adapted, head on faces{' + mirrored faces' if mirror else ''}, lam {lam:g}, scored "
                  f"{test}{' (before 2026-12-03)' if (not mirror and lam == 1e-2) else ''}: acc {100*acc:5.1f}  mcr {100*mcr:5.1f}",
                  flush=True)
    for lam in (3e-3, 5e-3, 2e-2):           # the pull's strength again, with the mirrored faces
        Z = np.zeros((len(y), C))
        for j, q in enumerate(people):
            tr = S != q
            W, b = fit(np.concatenate([f0[j][tr], fm[j][tr]]), np.concatenate([y[tr], y[tr]]), lam=lam)
            Z[~tr] = f0[j][~tr] @ W.T + b
        acc, mcr = score(y, Z)
        print(f"{name:14s} adapted, head on faces + mirrored faces, lam {lam:g}, scored plain: acc {100*acc:5.1f}  "
              f"mcr {100*mcr:5.1f}", flush=True)
    # more training faces still: 4 randomly shifted / rotated / scaled (and flipped) copies of each, as the network's
    # training augments them (Augment of the cpu-lower recipe, and half of it)
    from vrfer.augment import Augment
    from vrfer.inference.representation import grabbed_representation
    for shift, rot, sc in ((0.06, 10.0, 0.05), (0.03, 5.0, 0.03)):
        aug, n_aug = Augment(flip=True, shift=shift, rotate=rot, scale=sc), 4

        def jittered():
            out = []
            for j, q in enumerate(people):
                m = adabn(MODEL, ds["crops"][S != q]).eval()
                per = []
                for k in range(n_aug):
                    g = torch.Generator().manual_seed(1000 * k + j)
                    with torch.inference_mode(), grabbed_representation(m) as grabbed:
                        for i in range(0, len(y), 256):
                            m(prepare(ds["crops"][i:i + 256], m.cfg, aug, g))
                    per.append(torch.cat(grabbed).double().numpy())
                out.append(np.stack(per))
            return np.stack(out)                                   # (P, n_aug, N, D)
        J = cached(f"{name}_jitter_{shift}", jittered)
        for lam in (1e-2, 3e-2):
            Z = np.zeros((len(y), C))
            for j, q in enumerate(people):
                tr = S != q
                W, b = fit(np.concatenate([f0[j][tr], fm[j][tr]] + [J[j, k][tr] for k in range(n_aug)]),
                           np.concatenate([y[tr]] * (2 + n_aug)), lam=lam)
                Z[~tr] = f0[j][~tr] @ W.T + b
            acc, mcr = score(y, Z)
            print(f"{name:14s} adapted, head on faces + mirrored + {n_aug} jittered (shift {shift}, rotate {rot}, scale {sc}), "
                  f"lam {lam:g}: acc {100*acc:5.1f}  mcr {100*mcr:5.1f}", flush=True)
    if name != "taiwanese-dev":
        return
    g0, g1 = rep_generic(ds, name, 0), rep_generic(ds, name, 1); gm = 2 * g1 - g0

    def calib(mode, mirror_enrol, mirror_adapt, blend):
        heads = {}
        for j, p in enumerate(people):
            if mode == "generic":
                heads[p] = (g0, gm, W0, B0, GEN_SHIFT)
                continue
            tr = S != p
            X, yy = (np.concatenate([f0[j][tr], fm[j][tr]]), np.concatenate([y[tr], y[tr]])) if mirror_adapt \
                else (f0[j][tr], y[tr])
            W, b = fit(X, yy, lam=1e-2)
            heads[p] = (f0[j], fm[j], W, b, np.zeros(C))
        rng = np.random.default_rng(0); rb, rc = [], []
        for _ in range(5):
            bp, cp, tt = [], [], []
            for person, _pool, enrolled, scored in enrolments(ds, rng, 1):
                Fp, Fm, W, b, sh = heads[person]
                rows = sorted(set(y[enrolled].tolist()))
                Xe, ye = Fp[enrolled], y[enrolled]
                if mirror_enrol:
                    Xe, ye = np.concatenate([Xe, Fm[enrolled]]), np.concatenate([ye, ye])
                W2, b2 = fit(Xe, ye, W, b, lam=0.1, rows=rows)
                W2, b2 = blend * W2 + (1 - blend) * W, blend * b2 + (1 - blend) * b
                z0 = Fp[scored] @ W.T + b
                z1 = z0.copy(); z1[:, rows] = Fp[scored] @ W2[rows].T + b2[rows]
                bp.append((z0 + sh).argmax(1)); cp.append((z1 + sh).argmax(1)); tt.append(y[scored])
            t = np.concatenate(tt)
            rb.append(scores(t, np.concatenate(bp))["accuracy"]); rc.append(scores(t, np.concatenate(cp))["accuracy"])
        return np.mean(rb), np.mean(rc)

    both, plain = (False, True), (False,)
    for mode, blend, adapt_mirror, enrol in (("generic", 1.0, False, both), ("adapted", 0.5, False, both),
                                             ("adapted", 0.5, True, both), ("adapted", 0.25, True, plain),
                                             ("adapted", 0.75, True, plain), ("adapted", 1.0, True, plain)):
        for enrol_mirror in enrol:
            a, c = calib(mode, enrol_mirror, adapt_mirror, blend)
            print(f"calib K=1 from {mode}{' (head on + mirrored faces)' if adapt_mirror else ''}, blend {blend}, enrolment"
                  f"{' + mirrored' if enrol_mirror else ''}: {100*a:5.1f} -> {100*c:5.1f} ({100*(c-a):+5.1f})", flush=True)


def ceiling(name="taiwanese-dev", lams=(1e-2, 1e-3), person_weights=(1.0, 5.0, 20.0, 100.0)):
    """How far a last layer on this representation can go for a person, whatever calibration does: the adapted head
    (fold AdaBN, L2-SP, faces + mirrored) refitted jointly on the other people AND the person's own labelled faces of
    every session but one, all frames (far more than K=1 of one session), scored on the held-out session
    (fits that never saw the scored session); and, as the representation's linear capacity, a head fitted on every
    face including the scored ones (it saw them: not a result, a bound)."""
    ds = load(name); y, S, T = ds["labels"], ds["subjects"], ds["sessions"]; people = list(np.unique(S))
    one_class = {s for s in np.unique(T) if len(np.unique(y[T == s])) == 1}
    f0, f1 = rep_fold(ds, name, 0), rep_fold(ds, name, 1); fm = 2 * f1 - f0
    for lam in lams:
        for w in person_weights:
            for mode in ("adapted (other people only)", "other people + own other sessions"):
                if mode.startswith("adapted") and w != person_weights[0]:
                    continue
                pred, true = [], []
                for j, p in enumerate(people):
                    own = S == p
                    for s in np.unique(T[own]):
                        if s in one_class:
                            continue
                        scored = own & (T == s)
                        tr = ~own if mode.startswith("adapted") else ~scored
                        wt = np.where(own[tr], w, 1.0)
                        W, b = fit(np.concatenate([f0[j][tr], fm[j][tr]]), np.concatenate([y[tr], y[tr]]), lam=lam,
                                   weights=np.concatenate([wt, wt]))
                        pred.append((f0[j][scored] @ W.T + b).argmax(1)); true.append(y[scored])
                s_ = scores(np.concatenate(true), np.concatenate(pred))
                print(f"{name:14s} ceiling, lam {lam:g}, {mode}{'' if mode.startswith('adapted') else f' (weight {w:g})'}, "
                      f"scored per held-out session: acc {100*s_['accuracy']:5.1f}  mcr {100*s_['mean_class_recall']:5.1f}",
                      flush=True)
        Z = np.zeros((len(y), C))
        for j, p in enumerate(people):
            W, b = fit(np.concatenate([f0[j], fm[j]]), np.concatenate([y, y]), lam=lam)
            Z[S == p] = f0[j][S == p] @ W.T + b
        acc, mcr = score(y, Z)
        print(f"{name:14s} bound, lam {lam:g}: a head fitted on every face, the scored ones included: acc {100*acc:5.1f}  "
              f"mcr {100*mcr:5.1f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["adapt", "calib", "finetune", "first-frames", "pernorm", "unlabelled", "spatial", "mirror", "ceiling"])
    a = ap.parse_args(argv)
    if a.only == "ceiling":
        ceiling("taiwanese-dev")
        return 0
    per_set = {"mirror": mirrored, "spatial": spatial, "unlabelled": unlabelled}   # run on both photo sets
    if a.only in per_set:
        for name in ["taiwanese-dev", "jaffe"]:
            per_set[a.only](name)
        return 0
    if a.only == "pernorm":
        for k in (1, 3):
            calib_pernorm("taiwanese-dev", k=k)
        return 0
    if a.only in ("finetune", "first-frames"):
        for name in ["taiwanese-dev", "jaffe"]:
            if a.only == "first-frames":
                first_frames(name)
            else:
                finetune_loo(name, {"head only (current)": None,
                                    "last block+head, Adam 1e-4, 5 ep, sp 1e-2": dict(lr=1e-4, epochs=5, sp=1e-2),
                                    "last block+head, Adam 3e-4, 5 ep, sp 1e-2": dict(lr=3e-4, epochs=5, sp=1e-2),
                                    "last block+head, Adam 1e-4, 10 ep, sp 1e-3": dict(lr=1e-4, epochs=10, sp=1e-3)})
        return 0
    if a.only not in ("calib",):
        for name in ["taiwanese-dev", "jaffe"]:
            ds = load(name)
            f0, f1 = rep_fold(ds, name, 0), rep_fold(ds, name, 1); g0 = rep_generic(ds, name, 0)
            p0 = rep_perperson(ds, name, 0)
            print(f"{name:14s} {'generic':58s} acc {100*score(ds['labels'], g0 @ W0.T + B0 + GEN_SHIFT)[0]:5.1f}  "
                  f"mcr {100*score(ds['labels'], g0 @ W0.T + B0 + GEN_SHIFT)[1]:5.1f}")
            exps = {
                "adapted: fold AdaBN + L2-SP lam 1e-2 (current)": lambda: loo(ds, f0),
                "adapted: + flip-averaged representation": lambda: loo(ds, f1),
                "adapted: no AdaBN": lambda: loo(ds, g0),
                "adapted: L2-SP lam 3e-3": lambda: loo(ds, f0, lam=3e-3),
                "adapted: L2-SP lam 3e-2": lambda: loo(ds, f0, lam=3e-2),
                "adapted: balanced class weights": lambda: loo(ds, f0, balanced=True),
                "adapted: L2-normalised repr.": lambda: loo(ds, f0, l2norm=True),
                "adapted: z-scored repr., L2->0 lam 0.1": lambda: loo2(ds, f0, 0.1),
                "adapted: z-scored repr., L2->0 lam 0.2, flip": lambda: loo2(ds, f1, 0.2),
                "adapted: z-scored repr., L2-SP (scaled) lam 0.1": lambda: loo2(ds, f0, 0.1, sp=True),
                "(transd.) AdaBN on all faces incl. the scored person": lambda: loo(ds, rep_all(ds, name, 0)),
                "(transd.) per-person mean centring": lambda: loo(ds, f0, centre="mean"),
                "(transd.) per-person AdaBN": lambda: loo(ds, p0),
                "(transd.) per-person AdaBN + centring": lambda: loo(ds, p0, centre="mean"),
                "(transd.) per-person AdaBN + z-score lam 0.1 + centring": lambda: loo2(ds, p0, 0.1, centre=True),
            }
            for k, f in exps.items():
                acc, mcr = f()
                print(f"{name:14s} {k:58s} acc {100*acc:5.1f}  mcr {100*mcr:5.1f}", flush=True)
    if a.only != "adapt":
        name = "taiwanese-dev"; ds = load(name)
        gp = person_setup(ds, rep_generic(ds, name, 0), "generic", centred_head=True)
        ap_ = person_setup(ds, rep_fold(ds, name, 0), "adapted", centred_head=True)
        exps = {
            "L2-SP lam 0.1, enrolled rows (current)": cal_l2sp(0.1),
            "L2-SP lam 1": cal_l2sp(1.0),
            "bias only": cal_bias(),
            "weights only (bias fixed), lam 0.1": cal_sp2(0.1, fix_bias=True),
            "weights only, lam 0.03": cal_sp2(0.03, fix_bias=True),
            "class-balanced enrolment weights, lam 0.1": cal_balanced(0.1),
            "blend 0.5 unprofiled + 0.5 L2-SP lam 0.1": cal_blend(0.5),
            "offset (enrolment mean -> reference mean)": cal_offset("run"),
            "offset + weights only lam 0.3": cal_sp2(0.3, fix_bias=True, use_offset=True),
            "offset, head refit on per-person-centred others (*)": cal_offset("c"),
            "NCM cosine (centred) added, alpha 3": cal_ncm(3),
            "NCM cosine (centred) added, alpha 8": cal_ncm(8),
        }
        for k, f in exps.items():
            for tag, pp in (("generic", gp), ("adapted", ap_)):
                b0, c0, rb, rc = calib_eval(ds, pp, f)
                print(f"calib K=1 from {tag:8s} {k:52s} {100*b0:5.1f} -> {100*c0:5.1f} ({100*(c0-b0):+5.1f})  "
                      f"mcr {100*rb:5.1f} -> {100*rc:5.1f}", flush=True)
        print("(*) from 'generic' this row uses a head fitted on the other people's labelled faces: it is adaptation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
