"""Speed of the prediction pipeline on the CPU.

    classifier, batch 1        ms per face (one thread by default)           target <= 1 ms
    classifier, batched        faces per second at --batch
    pipeline, 640x480 frame    detect + crop + classify, ms per frame        target <= 10 ms
        detect    a full search of every frame (photos; a video's first frame)
        tracked   a video after its first frame: one zoomed detector pass around the last face

The frame: a sample photo with a synthetic headset, scaled to a 300 px face and put on a 640x480
background. --model: a bundled model name or .safetensors file; without one, the default model when it
is installed, else an untrained 'vrfer-cnn-small' (visible-half input), which has the same speed.
--backend onnx times vrfer.inference.onnx_backend.OnnxClassifier instead (when it exists).

    python benchmarks/bench_pipeline.py [--threads 1] [--seconds 2] [--backend torch|onnx]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def timeit(fn, seconds: float, min_runs: int = 5) -> list[float]:
    fn()  # warm-up
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < min_runs:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def fmt(times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    return (f"median {statistics.median(ms):7.2f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:7.2f} ms "
            f"({len(ms)} runs)")


def load_classifier(model: str | None, backend: str, threads: int | None = None):
    from vrfer.models import create_model
    from vrfer.models.registry import bundled_models
    from vrfer.inference.loader import load_classifier as _load_classifier
    from vrfer.pretrained import DEFAULT_MODEL
    if model is None:
        if DEFAULT_MODEL in bundled_models():
            model = DEFAULT_MODEL
        else:
            if backend != "torch":
                raise SystemExit("--backend onnx needs --model (a bundled name or .safetensors file)")
            print("(no bundled model installed: timing an untrained vrfer-cnn-small, visible-half input)")
            return _load_classifier(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), "torch"), \
                "vrfer-cnn-small (untrained)"
    return _load_classifier(model, backend, threads=threads), model


def test_frame() -> np.ndarray:
    import cv2
    from vrfer.recognizer import load_image
    from vrfer.inputs import samples_path
    photo = sorted(samples_path().glob("photo-*"))[0]
    face = load_image(photo)
    face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR) if face.ndim == 2 else face
    face = cv2.resize(face, (300, 300), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    frame[120:420, 200:500] = face
    return frame


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from vrfer.faces import RetinaFaceDetector
    from vrfer.recognizer import Recognizer

    clf, name = load_classifier(a.model, a.backend, a.threads)
    print(f"model {name}, backend {a.backend}, {a.threads} thread(s), input {clf.cfg.input_mode} "
          f"{clf.cfg.image_size}px; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 48, 48), dtype=np.uint8)
    many = rng.integers(0, 256, (a.batch, 48, 48), dtype=np.uint8)

    t1 = timeit(lambda: clf.predict_proba(one), a.seconds)
    print(f"classifier, batch 1:          {fmt(t1)}   target <= 1 ms/face")
    tb = timeit(lambda: clf.predict_proba(many), a.seconds, min_runs=3)
    print(f"classifier, batch {a.batch:<4}:       {a.batch / statistics.median(tb):8.0f} faces/s "
          f"({1000 * statistics.median(tb) / a.batch:.3f} ms/face)")

    det = RetinaFaceDetector(threads=a.threads)
    rec = Recognizer(clf.model if a.backend == "torch" else a.model, backend=a.backend, detector=det) \
        if a.backend == "torch" else Recognizer(a.model, backend=a.backend, detector=det)
    frame = test_frame()
    faces = rec.predict(frame)
    print(f"test frame 640x480: {len(faces)} face(s) found, box {faces[0].box}")
    td = timeit(lambda: rec.predict(frame), a.seconds)
    print(f"pipeline 640x480, detect:     {fmt(td)}   target <= 10 ms/frame")
    rec.reset()
    rec.predict(frame, track=True)
    tt = timeit(lambda: rec.predict(frame, track=True), a.seconds)
    print(f"pipeline 640x480, tracked:    {fmt(tt)}   target <= 10 ms/frame")
    tdet = timeit(lambda: det.detect(frame), a.seconds)
    print(f"  of which detect alone:      {fmt(tdet)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
