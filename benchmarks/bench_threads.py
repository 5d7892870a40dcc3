"""Which thread policy holds up: single-frame latency and folder throughput, idle and with the cores busy.

    python benchmarks/bench_threads.py [--backend torch|onnx] [--photos 100] [--seconds 3]

Policies (vrfer.threads): 1 thread; 2 threads without spinning; 2 threads with onnxruntime's default
spinning (what vrfer did before: library defaults). Each is measured twice: on the machine as it is,
and with a CPU hog on every core (one busy-looping process per core, as a VR PC that renders). Frame:
a faces-dev photo with a synthetic headset in a 640x480 frame, full detection + classification
(Recognizer.predict). Folder: `--photos` faces-dev photos read from disk and predicted one by one, as
`vrfer predict DIR` does. The load average is printed; other jobs on the machine depress all figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_realtime import hog  # one CPU hog for both benchmarks (run from benchmarks/ or the repo)

SHARED = Path(os.environ.get("VRFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FACES_DEV = SHARED / "data" / "faces-dev" / "images"




def headset_frame(photo) -> np.ndarray:
    import cv2
    from vrfer.faces import RetinaFaceDetector
    from vrfer.occlusion import draw_headset
    img = cv2.imread(str(photo))
    face = RetinaFaceDetector(threads=1).detect(img)[0]
    img = cv2.resize(draw_headset(img, face.box), (300, 300), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    frame[120:420, 200:500] = img
    return frame


def stats(times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    return f"min {ms[0]:6.1f}  median {statistics.median(ms):6.1f}  p90 {ms[int(0.9 * (len(ms) - 1))]:6.1f} ms"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    ap.add_argument("--model", default="vrfer-lower")
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    if not FACES_DEV.is_dir():
        print(f"faces-dev photos not found at {FACES_DEV}", file=sys.stderr)
        return 1
    import vrfer.threads as vt
    from vrfer.faces import RetinaFaceDetector
    from vrfer.recognizer import Recognizer, load_image

    photos = sorted(FACES_DEV.glob("*.jpg"))[: a.photos]
    frame = headset_frame(photos[0])
    policies = [("1 thread", 1, False), ("2 threads, no spinning", 2, False),
                ("2 threads, spinning (library default)", 2, True)]
    print(f"backend {a.backend}, model {a.model}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"{'policy':<40} {'load':<6} {'frame 640x480 (detect + classify)':<48} {'folder':>22}")
    for busy in (False, True):
        for name, n, spin in policies:
            vt.ALLOW_SPINNING = spin
            rec = Recognizer(a.model, backend=a.backend, threads=n, detector=RetinaFaceDetector(threads=n))
            rec.predict(frame)
            with hog(busy):
                times, end = [], time.perf_counter() + a.seconds
                while time.perf_counter() < end or len(times) < 5:
                    t = time.perf_counter()
                    rec.predict(frame)
                    times.append(time.perf_counter() - t)
                t = time.perf_counter()
                for p in photos:
                    try:
                        rec.predict(load_image(p))
                    except Exception:  # noqa: BLE001  (no face: counted like vrfer predict does)
                        pass
                folder = time.perf_counter() - t
            print(f"{name:<40} {'hog' if busy else 'as is':<6} {stats(times) + f' ({len(times)} runs)':<48} "
                  f"{1000 * folder / len(photos):6.1f} ms/photo", flush=True)
    vt.ALLOW_SPINNING = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
