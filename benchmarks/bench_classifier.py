"""Per-face classifier latency and batched throughput: PyTorch vs onnxruntime, on one CPU thread.

    python benchmarks/bench_classifier.py                      # vrfer-cnn, vrfer-cnn-small, visible-half
    python benchmarks/bench_classifier.py --model vrfer-lower --model runs/x/best.safetensors
    python benchmarks/bench_classifier.py --threads 2 --repeat 500

Latency: one 48x48 face per call (batch 1), end to end through `.predict_proba` (preprocessing
included), median (and fastest) over --repeat calls; "net" is the network alone on a prepared input.
Throughput: batches of --batch faces. Target: <= 1 ms per face on one thread.
Figures are depressed when something else (a training run) shares the CPU: the load is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vrfer.inference.torch_backend import TorchClassifier
from vrfer.models import create_model
from vrfer.models.registry import count_params, get_config
from vrfer.inference.preprocess import prepare

SHARED = Path(os.environ.get("VRFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def faces(n: int) -> tuple[np.ndarray, str]:
    files = sorted((SHARED / "data" / "ferplus" / "FER2013Test").glob("*.png"))[:n]
    if len(files) == n:
        from PIL import Image
        return np.stack([np.asarray(Image.open(f).convert("L")) for f in files]), "FER+ test faces"
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8), "random 48x48 crops"


def timeit(fn, repeat: int, warmup: int = 5) -> tuple[float, float]:
    """(median, fastest) seconds per call; the fastest is the better guess on a shared CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def load(name: str, mode: str):
    """An architecture gets fresh weights in the asked input mode; a trained model keeps its own."""
    path = Path(name)
    if path.suffix == ".safetensors" or path.is_dir() or get_config(name).weights:
        return create_model(name).eval()
    return create_model(name, pretrained=False, input_mode=mode).eval()


def bench(name: str, mode: str, crops: np.ndarray, a) -> list[dict]:
    from vrfer.inference.onnx_backend import OnnxClassifier
    model = load(name, mode)
    cfg = model.cfg
    rows = []
    one, batch = crops[:1], crops[:a.batch]
    x1, xb = prepare(one, cfg), prepare(batch, cfg)
    backends = {"pytorch": TorchClassifier(model)}
    if not a.no_onnx:
        backends["onnxruntime"] = OnnxClassifier(model, intra_op_threads=a.threads)
    for backend, clf in backends.items():
        if backend == "pytorch":
            @torch.inference_mode()
            def net1():
                model(x1)

            @torch.inference_mode()
            def netb():
                model(xb)
        else:
            feed1, feedb = {clf._input: x1.numpy()}, {clf._input: xb.numpy()}
            net1 = lambda: clf.session.run(None, feed1)  # noqa: E731
            netb = lambda: clf.session.run(None, feedb)  # noqa: E731
        lat, lat_min = timeit(lambda: clf.predict_proba(one), a.repeat)
        lat_net = timeit(net1, a.repeat)[0]
        thr = timeit(lambda: clf.predict_proba(batch), a.batch_repeat, warmup=2)[0]
        thr_net = timeit(netb, a.batch_repeat, warmup=2)[0]
        rows.append(dict(model=cfg.name if cfg.name == name else f"{cfg.name} ({Path(name).name})",
                         mode=cfg.input_mode, params=count_params(model), input="x".join(map(str, cfg.input_shape)),
                         backend=backend, lat=lat * 1e3, lat_min=lat_min * 1e3, lat_net=lat_net * 1e3,
                         per_face=thr / len(batch) * 1e3, per_face_net=thr_net / len(batch) * 1e3,
                         fps=len(batch) / thr))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", help="registry name or .safetensors (repeatable)")
    p.add_argument("--mode", default="visible-half", help="input mode for architectures (default visible-half)")
    p.add_argument("--threads", type=int, default=1, help="torch threads and onnxruntime intra-op threads")
    p.add_argument("--repeat", type=int, default=300, help="batch-1 calls timed")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batch-repeat", type=int, default=20)
    p.add_argument("--no-onnx", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = a.model or ["vrfer-cnn", "vrfer-cnn-small"]
    crops, source = faces(max(a.batch, 1))

    import onnxruntime
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {a.threads} thread(s), "
          f"{source}; load average {load1:.2f} on {os.cpu_count()} cores"
          + ("  (busy machine: figures depressed)" if load1 > 0.5 else ""))
    rows = []
    for name in names:
        rows += bench(name, a.mode, crops, a)
    wm = max(28, *(len(r["model"]) for r in rows))
    head = (f"{'model':<{wm}} {'input':>8} {'params':>8} {'backend':<12} {'batch1 ms':>9} {'(min)':>7} {'(net)':>7} "
            f"{'b' + str(a.batch) + ' ms/face':>12} {'(net)':>7} {'faces/s':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<{wm}} {r['input']:>8} {r['params'] / 1e6:>7.2f}M {r['backend']:<12} {r['lat']:>9.3f} "
              f"{r['lat_min']:>7.3f} {r['lat_net']:>7.3f} {r['per_face']:>12.3f} {r['per_face_net']:>7.3f} {r['fps']:>8.0f}")
    worst = max(r["lat"] for r in rows)
    best = min(r["lat"] for r in rows)
    print(f"target <= 1 ms per face (batch 1, {a.threads} thread): "
          f"best {best:.3f} ms, worst {worst:.3f} ms -> {'met' if best <= 1 else 'not met'} by the fastest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
