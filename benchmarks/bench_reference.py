"""The automatic reference (vrfer.personal.reference.RunningReference) on simulated VR sessions, against the explicit neutral
reference and the generic answer, leave-one-dataset-out (the head never saw the data set it is scored on).

A session of one person is built from their photos (pipeline crops with vrfer's synthetic headset): mostly neutral
frames (NEUTRAL_SHARE) with expressive episodes of 1-3 s, each episode one expressive photo held, at 30 fps. Kinds:
  plain:      neutral first (the wearer puts the headset on relaxed), then episodes;
  expressive: the session opens with a 3 s expressive episode (a wrong start: the reference learns from it);
  light:      half way, the light changes (the crops darken to 60%): the reference is from other light.
Each frame goes through Pipeline.answer as the product answers it. Reported per kind: accuracy and mean per-class
recall over the frames after warm-up, for generic / auto / neutral (the mean of the person's OTHER neutral photos, an
explicit enrolment), and during warm-up the auto answer against the generic one (equal by design: auto gives no
reference until it has AUTO_WARMUP neutral-looking frames).

    python benchmarks/bench_reference.py --head-jaffe /tmp/ref/ref-tw.safetensors \
        --head-taiwanese-dev /tmp/ref/ref-jaffe.safetensors [--sessions 3] [--seed 0]

(/tmp/ref/ref-tw.safetensors: tools/fit_reference_head.py on taiwanese-dev only; ref-jaffe: on JAFFE only.)
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from vrfer.evaluate import folder_faces, scores, subjects_of
from vrfer.inference.loader import torch_model
from vrfer.inference.pipeline import Pipeline
from vrfer.inference.postprocess import softmax
from vrfer.personal.reference import AUTO_WARMUP, RunningReference
from vrfer.inference.representation import logits_and_features

FPS = 30
NEUTRAL_SHARE = 0.8
LENGTH_S = 60


def faces(model, root):
    """(crops, labels, subjects) of a labelled folder with the synthetic headset, cached by the folder's path."""
    cache = Path.home() / ".cache" / "vrfer" / "bench_reference"
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / (hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16] + ".npz")
    if not f.exists():
        items, crops, found, _, _ = folder_faces(model, root, "detect", "headset")
        items = [it for it, ok in zip(items, found) if ok]
        np.savez(f, crops=crops, labels=np.array([it.label for it in items]), subjects=subjects_of(items))
    d = np.load(f)
    return d["crops"], d["labels"], d["subjects"]


def session(rng, labels, own, kind):
    """Frame indices (into the person's photos) and the frame's true label, LENGTH_S seconds."""
    neutral = own[labels[own] == 0]
    expressive = own[labels[own] != 0]
    frames = []
    if kind == "expressive":
        frames += [rng.choice(expressive)] * (3 * FPS)
    while len(frames) < LENGTH_S * FPS:
        if rng.random() < NEUTRAL_SHARE:
            frames += list(rng.choice(neutral, size=FPS))                 # 1 s of relaxed face
        else:
            frames += [rng.choice(expressive)] * int(rng.integers(1, 4) * FPS)
    return np.array(frames[:LENGTH_S * FPS])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-jaffe", required=True, help="model whose referenced head never saw JAFFE")
    ap.add_argument("--head-taiwanese-dev", required=True, help="model whose referenced head never saw taiwanese-dev")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--sessions", type=int, default=3, help="simulated sessions per person and kind")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for name, model_file in (("jaffe", a.head_jaffe), ("taiwanese-dev", a.head_taiwanese_dev)):
        model = torch_model(model_file)
        pipe = Pipeline(model, face="none", backend="torch")
        crops, labels, subjects = faces(model, Path(a.data) / name)
        lg, ft = logits_and_features(model, crops)
        dark = np.clip(crops.astype(np.float32) * 0.6, 0, 255).astype(np.uint8)
        lg_dark, ft_dark = logits_and_features(model, dark)
        rng = np.random.default_rng(a.seed)
        for kind in ("plain", "expressive", "light"):
            truth, gen, auto, neu, warm_gen, warm_auto = [], [], [], [], [], []
            for person in np.unique(subjects):
                own = np.flatnonzero(subjects == person)
                for _ in range(a.sessions):
                    idx = session(rng, labels, own, kind)
                    running = RunningReference(pipe.classes)
                    for t, i in enumerate(idx):
                        z, f = (lg_dark[i], ft_dark[i]) if kind == "light" and t >= len(idx) // 2 else (lg[i], ft[i])
                        others = own[(labels[own] == 0) & (own != i)]           # an enrolment never holds the frame
                        ref = ft[others].mean(axis=0) if len(others) else None  # enrolled before, in the first light
                        was_settled = running.settled
                        p_auto = pipe.answer(z[None], f[None], None, running)[0]
                        p_gen = softmax(z[None])[0]
                        p_neu = pipe.answer(z[None], f[None], None, ref)[0]
                        if not was_settled:
                            warm_gen.append(p_gen.argmax() == labels[i])
                            warm_auto.append(p_auto.argmax() == labels[i])
                            continue
                        truth.append(labels[i])
                        gen.append(p_gen.argmax())
                        auto.append(p_auto.argmax())
                        neu.append(p_neu.argmax())
            truth = np.array(truth)
            row = {k: scores(truth, np.array(v)) for k, v in (("generic", gen), ("auto", auto), ("neutral", neu))}
            print(f"{name:>13} {kind:>10}: after warm-up ({len(truth)} frames) " + "  ".join(
                f"{k} {100 * r['accuracy']:.1f}%/{r['mean_class_recall']:.3f}" for k, r in row.items())
                + f"  | warm-up ({len(warm_gen)} frames, {AUTO_WARMUP} neutral-looking needed): generic "
                f"{100 * np.mean(warm_gen):.1f}% auto {100 * np.mean(warm_auto):.1f}%")


if __name__ == "__main__":
    main()
