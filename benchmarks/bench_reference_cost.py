"""What reading the wearer against a reference costs per frame (vrfer.personal.reference): Recognizer.predict on one face crop
(--face none, so the detector's time is out and the share is the largest it can be), reference off against a fixed
reference, each backend, one thread. Run pinned: `taskset -c 0 python benchmarks/bench_reference_cost.py`.
Prints min and median microseconds per frame over --reps calls (after 20 warm-up calls, the two settings interleaved) and the extra share."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from bench_calibration import cpu_name  # benchmarks/ is on sys.path when a script here runs

from vrfer.recognizer import Recognizer
from vrfer.inputs import samples_path


def per_frame(recs, img, reps):
    """Min and median microseconds per call of each recognizer, calls interleaved (a load that comes and goes on
    the machine falls on both alike)."""
    for rec in recs:
        for _ in range(20):
            rec.predict(img)
    t = [[] for _ in recs]
    for _ in range(reps):
        for k, rec in enumerate(recs):
            t0 = time.perf_counter()
            rec.predict(img)
            t[k].append(time.perf_counter() - t0)
    return [(1e6 * min(x), 1e6 * float(np.median(x))) for x in t]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    a = ap.parse_args()
    img = str(sorted(samples_path().glob("fer-*.png"))[0])
    print(f"CPU: {cpu_name()}; threads 1; affinity {sorted(os.sched_getaffinity(0))}; batch 1 (one face crop); "
          f"{a.reps} calls")
    for backend in ("auto", "torch"):
        off = Recognizer(face="none", backend=backend, threads=1, reference="off")
        ref_vec = off.pipeline.logits_and_features(off.pipeline.crops(*_face(off, img)))[1][0]
        on = Recognizer(face="none", backend=backend, threads=1, reference=ref_vec)
        (o_min, o_med), (r_min, r_med) = per_frame([off, on], img, a.reps)
        print(f"backend {backend:>5}: off min {o_min:7.1f} us median {o_med:7.1f} us | reference min {r_min:7.1f} us "
              f"median {r_med:7.1f} us | extra {100 * (r_med / o_med - 1):+.1f}% (median)")


def _face(rec, path):
    from vrfer.inference.images import load_image
    im = load_image(path)
    return im, rec.pipeline.find_faces(im)


if __name__ == "__main__":
    main()
