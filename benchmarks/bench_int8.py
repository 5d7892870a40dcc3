"""Accuracy of the int8 classifier against the float32 one on FER+ test (lower half, as vrfer evaluate
--occlusion upper-half), with 95% bootstrap intervals and how often the two agree.

    python benchmarks/bench_int8.py --model vrfer-lower --int8 src/vrfer/pretrained/vrfer-lower-int8.onnx \\
        --root ../shared/data/ferplus

float32: PyTorch (what `vrfer evaluate` measures); int8: onnxruntime on the given file. Deterministic.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vrfer-lower")
    ap.add_argument("--int8", required=True, help="int8 .onnx made by vrfer export --quantize int8")
    ap.add_argument("--root", required=True, help="FER+ root")
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)

    from vrfer.datasets.ferplus import load_ferplus
    from vrfer.inference.torch_backend import TorchClassifier
    from vrfer.metrics import bootstrap_ci
    from vrfer.models import create_model
    from vrfer.occlusion import occlude_upper
    from vrfer.inference.onnx_backend import OnnxClassifier
    from vrfer.inference.onnx_backend import quantization_info
    from vrfer.threads import use_torch_threads

    use_torch_threads(0)
    data = load_ferplus(a.root, a.split, "majority")
    model = create_model(a.model)
    images = occlude_upper(data.images, model.cfg.occlusion)
    p32 = TorchClassifier(model).predict_proba(images)
    p8 = OnnxClassifier(a.int8, intra_op_threads=0).predict_proba(images)
    print(f"FER+ {a.split}, {len(images)} faces, lower half (upper half occluded); data fingerprint "
          f"{data.fingerprint()}; int8: {quantization_info(a.int8)}")
    acc = {}
    for name, p in (("float32 (PyTorch)", p32), ("int8 (onnxruntime)", p8)):
        correct = (p.argmax(1) == data.labels).astype(np.float64)
        lo, hi = bootstrap_ci(correct)
        acc[name] = correct.mean()
        print(f"  {name:<20} accuracy {100 * correct.mean():.2f}% (95% CI {100 * lo:.2f}-{100 * hi:.2f})")
    d = 100 * (acc["int8 (onnxruntime)"] - acc["float32 (PyTorch)"])
    print(f"  int8 - float32: {d:+.2f} points; same top class on {(p8.argmax(1) == p32.argmax(1)).mean():.2%} "
          f"of faces; max |p_int8 - p_float32| {np.abs(p8 - p32).max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
