"""Peak arithmetic rate of one core of this CPU, measured: the ceiling every speed figure is compared to.

    python benchmarks/peak.py [--core 0]

Builds benchmarks/peak.c with the system C compiler (-O2 -march=native) and runs it pinned to one core
(`taskset -c CORE`): 12 independent FMA chains (fp32 GFLOP/s; AVX-512, else AVX2), int8 dot products
(GOP/s; AVX-512 VNNI, else AVX-VNNI, else AVX2's u8 x s8 pair products) and AMX int8 tile products where the
CPU has them. Best of 5 runs of each. A busy machine
lowers the figures (the core is shared): pause other jobs first for a clean number.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

SRC = Path(__file__).with_name("peak.c")


def measure(core: int = 0) -> dict[str, float]:
    """One core's peaks, named by instruction set: {'fp32_fma_avx512' or 'fp32_fma_avx2': GFLOP/s,
    'int8_vnni' / 'int8_avxvnni' / 'int8_avx2': GOP/s, 'int8_amx': GOP/s (if present)}; {} without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {}
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "peak"
        subprocess.run([cc, "-O2", "-march=native", "-o", str(exe), str(SRC)], check=True)
        cmd = ([shutil.which("taskset"), "-c", str(core)] if shutil.which("taskset") else []) + [str(exe)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}


def pick(peaks: dict[str, float], kind: str) -> tuple[str, float]:
    """(name, rate) of the fp32 FMA peak (kind 'fp32') or the SIMD int8 dot-product peak (kind 'int8', AMX
    aside); ('', nan) when not measured."""
    for k, v in peaks.items():
        if (kind == "fp32" and k.startswith("fp32_fma")) or (kind == "int8" and k.startswith("int8_") and k != "int8_amx"):
            return k, v
    return "", float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--core", type=int, default=0)
    a = ap.parse_args(argv)
    peaks = measure(a.core)
    if not peaks:
        print("no C compiler (cc/gcc): cannot measure the peak")
        return 1
    units = {"fp32_fma_avx512": "GFLOP/s (AVX-512 FMA, fp32)", "fp32_fma_avx2": "GFLOP/s (AVX2 FMA, fp32)",
             "int8_vnni": "GOP/s (AVX-512 VNNI, int8)", "int8_avxvnni": "GOP/s (AVX-VNNI, int8)",
             "int8_avx2": "GOP/s (AVX2 vpmaddubsw/vpmaddwd, int8)", "int8_amx": "GOP/s (AMX tiles, int8)"}
    for k, v in peaks.items():
        print(f"core {a.core}: {v:8.1f} {units.get(k, k)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
