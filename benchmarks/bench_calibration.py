"""What calibration costs: building a profile and a calibrated answer, on one thread.

- enrol: vrfer.personal.calibration.enrol on the representations of 7 classes x 30 faces (the network's pass over
  those faces is counted apart: during a live calibration each frame is classified anyway);
- per face: Pipeline.classify on one 48x48 crop (batch 1), PyTorch float32, without and with a profile.
Prints min and median over repeats. Pin it for honest figures: `taskset -c 0 python benchmarks/bench_calibration.py`.
The faces: 30 per class of FER+ test's first 7 classes (lower half) where --root has FER+, else random pixels (the
solver takes fewer steps on those: an easier, less honest case; the output says which).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * min(ts), 1000 * float(np.median(ts))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    except OSError:
        return platform.processor() or platform.machine()


def real_faces(root, per_class: int, cfg):
    """per_class FER+ test faces of each of the classes 0-6, upper half occluded as the model sees them."""
    from pathlib import Path
    if not Path(root).is_dir():
        return None, None, None
    from vrfer.datasets.ferplus import load_ferplus
    from vrfer.occlusion import occlude_upper
    data = load_ferplus(root, "test", "majority")
    idx = np.concatenate([np.flatnonzero(data.labels == c)[:per_class] for c in range(7)])
    return occlude_upper(data.images[idx], cfg.occlusion), data.labels[idx], f"FER+ test, {len(idx)} faces"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vrfer-lower")
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--root", default="../shared/data/ferplus", help="FER+ folder for real faces")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from vrfer.personal.calibration import enrol
    from vrfer.inference.pipeline import Pipeline
    pipe = Pipeline(a.model, face="none", backend="torch", threads=1)
    model = pipe.torch_model()
    rng = np.random.default_rng(0)
    crops, labels, faces = real_faces(a.root, a.per_class, model.cfg)
    if crops is None:
        crops = rng.integers(0, 256, (7 * a.per_class, 48, 48), dtype=np.uint8)
        labels = np.repeat(np.arange(7), a.per_class)
        faces = "random pixels (no FER+ at --root)"
    t_feat = timed(lambda: pipe.logits_and_features(crops), 3)
    feats = pipe.logits_and_features(crops)[1]
    sha = pipe.model_sha256()      # a Pipeline keeps it: Recognizer.enrol and serve pass it to enrol
    t_enrol = timed(lambda: enrol(model, feats, labels, model_sha256=sha), a.repeats)
    one = crops[:1]
    t_plain = timed(lambda: pipe.classify(one), a.repeats * 10)
    pipe.set_profile(enrol(model, feats, labels))
    t_prof = timed(lambda: pipe.classify(one), a.repeats * 10)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, 1 thread; model {a.model}; faces: {faces}")
    print(f"network pass over {len(crops)} faces (batch {len(crops)}): min {t_feat[0]:.1f} ms, median {t_feat[1]:.1f} ms")
    print(f"enrol {len(crops)} faces of 7 classes (from representations): min {t_enrol[0]:.1f} ms, median {t_enrol[1]:.1f} ms")
    print(f"per face, batch 1, float32: plain min {t_plain[0]:.2f} / median {t_plain[1]:.2f} ms; with a profile "
          f"min {t_prof[0]:.2f} / median {t_prof[1]:.2f} ms ({100 * (t_prof[1] / t_plain[1] - 1):+.1f}% median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
