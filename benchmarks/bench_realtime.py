"""The real-time loop's speed, side by side: classifier, detector, tracked frame and full-detection frame,
on an idle machine and with every core busy, against the core's measured peak.

    python benchmarks/bench_realtime.py [--seconds 2] [--no-hog] [--photo FILE]

Rows (each in a child process pinned with `taskset`, threads as stated; vrfer.threads sessions, no spinning):
    classifier float32 / int8      batch 1 and batch 64 on one pinned core (1 thread); int8 batch 256 on
                                   both cores (2 threads): faces/s
    detector, full search          RetinaFaceDetector.detect on a 640x480 frame (headset face; RetinaFace scan, BlazeFace, slow passes)
    frame, tracked                 FaceTracker.update + crop + classify (the steady state of a video)
    frame, full detection          detect + crop + classify (a photo; a video's first frame)
GFLOP/s: counted work (multiply-adds x 2 of every Conv/Gemm of the ONNX graphs at the shapes run, the
detector's passes (RetinaFace pixels, BlazeFace 128x128 passes) counted as they happen) over the median time; share of peak: against benchmarks/peak.py
on core 0 (fp32 FMA for float32; for int8 the AMX int8 peak where the CPU has AMX, as onnxruntime's int8
kernels use AMX there, else the SIMD int8 dot-product peak (AVX-512 VNNI, AVX-VNNI or AVX2), shown beside it). "hog": one busy-looping process per core, started before and stopped after each row.
The load average before the run is printed: other jobs on the machine slow every row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VRFER_SHARED", HERE.parents[1] / "shared"))


# ------------------------------------------------------------------------------------------ counting work

def conv_gemm_flops(model, input_shape) -> float:
    """FLOPs (2 x multiply-adds) of the Conv and Gemm nodes of an ONNX model (path, bytes or ModelProto) at
    one input shape (N, C, H, W)."""
    import onnx
    from onnx import numpy_helper, shape_inference
    m = model if isinstance(model, onnx.ModelProto) else (
        onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model)))
    m = onnx.ModelProto.FromString(m.SerializeToString())
    inp = m.graph.input[0]
    for d, v in zip(inp.type.tensor_type.shape.dim, input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    m = shape_inference.infer_shapes(m)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    inits = {t.name: numpy_helper.to_array(t).shape for t in m.graph.initializer}
    # weights of QDQ graphs sit behind DequantizeLinear: follow it to the initializer
    deq = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    total = 0.0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        w = n.input[1]
        wshape = inits.get(w) or inits.get(deq.get(w, ""))
        out = shapes.get(n.output[0])
        if not wshape or not out:
            continue
        if n.op_type == "Conv":   # (Cout, Cin/g, kh, kw) per output pixel
            total += 2.0 * np.prod(out) * np.prod(wshape[1:])
        else:
            total += 2.0 * out[0] * np.prod(wshape)
    return float(total)


# ------------------------------------------------------------------------------------------ measuring

def timeit(fn, seconds: float, min_runs: int = 5) -> list[float]:
    fn()
    out, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < min_runs:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def headset_frame(photo: Path) -> np.ndarray:
    """A face behind a synthetic headset, 300 px, in a 640x480 frame (the photo as it is when it carries
    a headset already, e.g. the bundled samples)."""
    import cv2
    from vrfer.faces import RetinaFaceDetector
    from vrfer.occlusion import draw_headset
    img = cv2.imread(str(photo))
    if "samples" not in photo.parts:
        faces = RetinaFaceDetector(threads=1).detect(img)
        if faces:
            img = draw_headset(img, faces[0].box)
    frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    frame[120:420, 200:500] = cv2.resize(img, (300, 300), interpolation=cv2.INTER_AREA)
    return frame


def fer_faces(n: int) -> np.ndarray:
    files = sorted((SHARED / "data" / "ferplus" / "FER2013Test").glob("*.png"))[:n]
    if len(files) == n:
        from PIL import Image
        return np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def part(name: str, threads: int, seconds: float, photo: Path) -> list[dict]:
    """Rows measured in this (pinned) process."""
    from vrfer.faces import RetinaFaceDetector, pretrained_onnx, retinaface_onnx
    from vrfer.inference.onnx_backend import OnnxClassifier, cached_onnx
    from vrfer.inference.loader import resolve
    from vrfer.inference.onnx_backend import bundled_int8
    from vrfer.recognizer import Recognizer
    from vrfer.threads import use_torch_threads
    from vrfer.faces.tracking import FaceTracker

    use_torch_threads(threads)
    rows = []
    f32_path, int8_path = cached_onnx(resolve("vrfer-lower", "torch").weights), bundled_int8("vrfer-lower")
    clfs = {"float32": OnnxClassifier(str(f32_path), intra_op_threads=threads)}
    if int8_path is not None:
        clfs["int8"] = OnnxClassifier(str(int8_path), intra_op_threads=threads)
    shape = clfs["float32"].cfg.input_shape
    gflop_face = conv_gemm_flops(f32_path, (1, *shape)) / 1e9
    faces = fer_faces(256)
    batches = (1, 64) if name == "one-core" else (256,)
    for dtype, clf in clfs.items():
        for b in batches:
            x = faces[:b]
            t = timeit(lambda: clf.predict_proba(x), seconds)
            rows.append(dict(row=f"classifier {dtype}", batch=b, dtype=dtype, gflop=gflop_face * b, per=b, times=t))
    if name != "one-core":
        return rows

    det = RetinaFaceDetector(threads=threads)
    det_bytes = retinaface_onnx()
    per_pixel = conv_gemm_flops(det_bytes, (1, 3, 256, 256)) / (256 * 256)
    pixels = [0]
    raw = det.raw

    def counting_raw(bgr, threshold):
        pixels[0] += bgr.shape[0] * bgr.shape[1]
        return raw(bgr, threshold)

    det.raw = counting_raw
    # BlazeFace (the detector's second opinion) runs a fixed 128x128 graph: count its passes
    blaze_gflop = conv_gemm_flops(pretrained_onnx("blazeface_short_range.onnx", "VRFER_BLAZEFACE_ONNX", "BlazeFace"),
                                  (1, 3, 128, 128)) / 1e9 if det.blazeface else 0.0
    blaze_passes = [0]
    if det.blazeface is not None:
        blaze_detect = det.blazeface.detect

        def counting_blaze(bgr, threshold=0.5, pad=0.0):
            blaze_passes[0] += 1
            return blaze_detect(bgr, threshold, pad)

        det.blazeface.detect = counting_blaze
    frame = headset_frame(photo)
    rec = Recognizer("vrfer-lower", detector=det, threads=threads)      # the default (auto) classifier path
    tracker = FaceTracker(det)
    for _ in range(4):
        tracker.update(frame)

    def tracked():
        fs = tracker.update(frame)
        rec.classify(rec.crops(frame, fs))

    def full():
        fs = det.detect(frame)
        rec.classify(rec.crops(frame, fs))

    found = det.detect(frame)
    for label, fn in (("detector, full search", lambda: det.detect(frame)),
                      ("frame, tracked (region + classify)", tracked),
                      ("frame, full detection + classify", full)):
        fn()
        pixels[0] = blaze_passes[0] = 0
        t = timeit(fn, seconds)
        # timeit makes one untimed warm-up call before the timed ones: the counters saw len(t) + 1 calls
        work = (pixels[0] * per_pixel / 1e9 + blaze_passes[0] * blaze_gflop) / (len(t) + 1)
        if label != "detector, full search":
            work += gflop_face                                           # one face classified (int8)
        rows.append(dict(row=label, batch=1, dtype="float32 det" + (" + int8 clf" if "frame" in label else ""),
                         gflop=work, per=1, times=t, faces=len(found)))
    return rows


# ------------------------------------------------------------------------------------------ the table

def _spin():
    while True:
        pass


@contextlib.contextmanager
def hog(on: bool):
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)] if on else []
    for p in procs:
        p.start()
    time.sleep(0.3 if on else 0)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


def run_part(name: str, cores: str, threads: int, a) -> list[dict]:
    cmd = ["taskset", "-c", cores, sys.executable, __file__, "--part", name, "--threads", str(threads),
           "--seconds", str(a.seconds), "--photo", str(a.photo)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per row")
    ap.add_argument("--no-hog", action="store_true", help="skip the busy-machine half")
    ap.add_argument("--photo", type=Path, default=None, help="face photo for the frames (default: a bundled sample)")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.photo is None:
        from vrfer.inputs import samples_path
        a.photo = sorted(samples_path().glob("photo-*"))[0]
    if a.part:
        for r in part(a.part, a.threads, a.seconds, a.photo):
            print(json.dumps(r))
        return 0

    sys.path.insert(0, str(HERE))
    import onnxruntime
    import peak
    peaks = peak.measure(0)
    (fp32_isa, fp32), (dot_isa, dot) = peak.pick(peaks, "fp32"), peak.pick(peaks, "int8")
    amx = peaks.get("int8_amx", float("nan"))
    print(f"{os.cpu_count()} CPUs, onnxruntime {onnxruntime.__version__}; load average {os.getloadavg()[0]:.2f} "
          f"before the run; photo {a.photo.name}")
    print(f"peak of core 0 (benchmarks/peak.py): {fp32_isa} {fp32:.1f} GFLOP/s, {dot_isa} {dot:.1f} GOP/s, "
          f"int8 AMX {amx:.1f} GOP/s")
    head = (f"{'':<36} {'load':<5} {'threads':>7} {'taskset':>7} {'batch':>5} {'min ms':>8} {'median':>8} "
            f"{'p90':>8} {'per item':>9} {'/s':>7} {'GFLOP/s':>8} {'of peak':>7} {'(dot)':>7}")
    print(head)
    print("-" * len(head))
    for busy in ([False] if a.no_hog else [False, True]):
        for name, cores, threads in (("one-core", "0", 1), ("both-cores", "0,1", 2)):
            with hog(busy):
                rows = run_part(name, cores, threads, a)
            for r in rows:
                ms = sorted(1000 * t for t in r["times"])
                med = statistics.median(ms)
                gflops = r["gflop"] / (med / 1000)
                int8 = "int8" in r["dtype"] and "det" not in r["dtype"]
                ncores = 2 if cores == "0,1" else 1
                share = gflops / ((amx if amx == amx else dot) if int8 else fp32) / ncores
                vshare = f"{gflops / (dot * ncores):>7.0%}" if int8 else f"{'':>7}"
                per = med / r["per"]
                print(f"{r['row']:<36} {'hog' if busy else 'idle':<5} {threads:>7} {cores:>7} {r['batch']:>5} "
                      f"{ms[0]:>8.2f} {med:>8.2f} {ms[int(0.9 * (len(ms) - 1))]:>8.2f} {per:>7.3f}ms "
                      f"{1000 / per:>7.0f} {gflops:>8.1f} {share:>7.0%} {vshare}", flush=True)
    print("of peak: fp32 FMA for float32 rows and frames (the detector is float32); int8 rows against the AMX "
          "int8 peak where the CPU has AMX (onnxruntime's int8 matrix products use it), else the SIMD int8 "
          f"dot-product peak; (dot): against the {dot_isa} peak; both-core rows against two cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
