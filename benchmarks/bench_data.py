"""Time to read all of FER+ (three splits), from the PNGs (cold cache) and from the cache (warm).

    python benchmarks/bench_data.py [--root ../shared/data/ferplus]
"""

import argparse
import tempfile
import time
from pathlib import Path

from vrfer.datasets.ferplus import SPLITS, load_ferplus


def read_all(root) -> int:
    return sum(len(load_ferplus(root, s, "majority", "label")) for s in SPLITS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"))
    a = ap.parse_args()
    import os
    with tempfile.TemporaryDirectory() as cache:
        os.environ["VRFER_CACHE"] = cache  # an empty cache: the first read decodes every PNG
        for label in ("cold cache (decode PNGs)", "warm cache"):
            t = time.perf_counter()
            n = read_all(a.root)
            print(f"{label:<26} {n} images in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
