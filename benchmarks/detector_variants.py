"""The detection strategies tried for a full detection under 10 ms on a 640x480 webcam frame (issue 11),
side by side on the same frames: how many headset faces each finds, and how fast.

    taskset -c 0 python benchmarks/detector_variants.py [--stride 3] [--threads 1]

Frames: every --stride-th faces-dev photo whose clean face RetinaFace finds, with the synthetic headset drawn
from that box, scaled to a seeded random 240-400 px and pasted at a seeded random place on a flat 640x480
frame. Found: the best face overlaps the clean box (moved with the photo) with IoU > 0.3. False: detections
on the 26 face-free images of benchmarks/detect_headset.py. Variants:

    retinaface          RetinaFaceDetector(blazeface=False).detect: scan, 640 px padded scan, zooms
    int8 retinaface     the same graph quantised by onnxruntime (static QDQ, per channel, MinMax on 64
                        other faces-dev photos), scan + one zoom at 300 px faces
    scan + zoom F       RetinaFace 320 px scan, then one zoom at F px faces on the best candidate (no slow passes)
    blazeface alone     BlazeFace on the whole frame, score >= 0.3
    vrfer (shipped)     RetinaFaceDetector().detect: scan, BlazeFace's second opinion, then the slow passes
    vrfer + refine      the same, BlazeFace's box replaced by a RetinaFace zoom at 160 px where it confirms it

Then (not with --no-geometry) what BlazeFace's mapping and padding rest on: BlazeFace's own box width (before
vrfer maps it, i.e. mapped width x BlazeFace.WIDTH_PER_RETINAFACE) over the clean RetinaFace box's width, and
its centre and bottom offsets (share of that width / height), on the headset frames and on the headset photos
themselves, unpadded and with the 50% border; and the time of one pass of each graph (median of 50).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_headset import SHARED, no_face_images, webcam_frame  # noqa: E402

from vrfer.faces import Face, RetinaFaceDetector, iou, retinaface_onnx  # noqa: E402
from vrfer.occlusion import draw_headset  # noqa: E402


def frames_from(files, det) -> list:
    rng = np.random.default_rng(0)
    out = []
    for p in files:
        img = cv2.imread(str(p))
        faces = det.detect(img) if img is not None else []
        if faces:
            ref = max(faces, key=lambda f: f.score).box
            out.append(webcam_frame(draw_headset(img, ref), ref, rng))
    return out


def scan_zoom(det, face_px):
    def detect(bgr):
        faces, cands = det._scan(bgr, det.scan_side, pad=0.0)
        if faces or not cands:
            return faces
        z = det.zoom(bgr, cands[0].box, face_px=face_px, threshold=det.zoom_threshold)
        return [z] if z else []
    return detect


def refined(det, face_px=160, context=1.5):
    def detect(bgr):
        faces = det.detect(bgr)
        out = []
        for f in faces:
            z = (det.zoom(bgr, f.box, context=context, face_px=face_px, threshold=0.05)
                 if f.detector == "blazeface" else None)
            out.append(Face(z.box, f.score, z.landmarks) if z is not None else f)
        return out
    return detect


def int8_detector(files, threads) -> RetinaFaceDetector:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    det = RetinaFaceDetector(threads=threads, blazeface=False)
    samples = []
    for i, p in enumerate(files):
        img = cv2.imread(str(p))
        faces = det.detect(img)
        if faces and i % 2 == 0:
            img = draw_headset(img, faces[0].box)
        for side in (320, 640):
            s = side / max(img.shape[:2])
            im = cv2.resize(img, None, fx=s, fy=s)
            samples.append(np.ascontiguousarray((im.astype(np.float32) - det.MEAN_BGR).transpose(2, 0, 1)[None]))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    tmp = Path(tempfile.mkdtemp())
    onnx.save(version_converter.convert_version(onnx.load_from_string(retinaface_onnx()), 13), tmp / "op13.onnx")
    quant_pre_process(str(tmp / "op13.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
    quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    os.environ["VRFER_RETINAFACE_ONNX"] = str(tmp / "int8.onnx")
    try:
        return RetinaFaceDetector(threads=threads, blazeface=False)
    finally:
        del os.environ["VRFER_RETINAFACE_ONNX"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(SHARED / "data" / "faces-dev" / "images"))
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-geometry", action="store_true", help="only the strategies table")
    a = ap.parse_args(argv)
    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    shipped = RetinaFaceDetector(threads=a.threads)
    plain = RetinaFaceDetector(threads=a.threads, blazeface=False)
    frames = frames_from(files[::a.stride], plain)
    negatives = no_face_images()
    variants = [("retinaface", plain.detect),
                ("int8 retinaface, scan + zoom 300", scan_zoom(int8_detector(files[1::8], a.threads), 300))]
    variants += [(f"scan + zoom {px}", scan_zoom(plain, px)) for px in (160, 200, 250, 300)]
    variants += [("blazeface alone", lambda bgr: shipped.blazeface.detect(bgr, 0.3)),
                 ("vrfer (shipped)", shipped.detect),
                 ("vrfer + refine", refined(shipped))]
    print(f"{len(frames)} webcam frames (640x480, headset photos 240-400 px, seed 0), {a.threads} thread(s)")
    for name, fn in variants:
        found, times = 0, []
        for frame, ref in frames:
            t0 = time.perf_counter()
            faces = fn(frame)
            times.append(1000 * (time.perf_counter() - t0))
            best = max(faces, key=lambda f: f.score) if faces else None
            found += bool(best is not None and iou(best.box, ref) > 0.3)
        false = sum(bool(fn(im)) for im in negatives)
        t = np.array(times)
        print(f"  {name:<34} found {found / len(frames):6.1%}  ms median {np.median(t):5.1f}  p90 "
              f"{np.percentile(t, 90):6.1f}  false {false}/{len(negatives)}", flush=True)
    if not a.no_geometry:
        photos = []
        for p in files[::a.stride]:
            img = cv2.imread(str(p))
            faces = plain.detect(img) if img is not None else []
            if faces:
                ref = max(faces, key=lambda f: f.score).box
                photos.append((draw_headset(img, ref), ref))
        geometry(shipped.blazeface, frames, photos)
        timing(shipped, int8_detector(files[1::8], a.threads))
    return 0


def geometry(blaze, frames, photos) -> None:
    k = blaze.WIDTH_PER_RETINAFACE
    print("BlazeFace's own box against the clean photo's RetinaFace box (medians; width ratio p10-p90):")
    for name, data in (("headset frames", frames), ("headset photos", photos)):
        for pad in (0.0, 0.5):
            rows = []
            for img, ref in data:
                found = [f for f in blaze.detect(img, 0.3, pad) if iou(f.box, ref) > 0.3]
                if found:
                    x, y, w, h = max(found, key=lambda f: f.score).box
                    rows.append((w * k / ref[2], (x + w / 2 - ref[0] - ref[2] / 2) / ref[2],
                                 (y + h - ref[1] - ref[3]) / ref[3]))
            if rows:
                r = np.array(rows)
                print(f"  {name:<15} pad {pad:.1f}: {len(r):3d} found; width ratio {np.median(r[:, 0]):.2f} "
                      f"({np.percentile(r[:, 0], 10):.2f}-{np.percentile(r[:, 0], 90):.2f}), centre "
                      f"{np.median(r[:, 1]):+.3f}, bottom {np.median(r[:, 2]):+.3f}")


def timing(shipped, int8) -> None:
    def med(fn):
        fn()
        t = []
        for _ in range(50):
            t0 = time.perf_counter()
            fn()
            t.append(1000 * (time.perf_counter() - t0))
        return np.median(t)
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    print("one pass, median of 50 (ms): BlazeFace 128x128 "
          f"{med(lambda: shipped.blazeface.detect(frame, 0.99)):.2f}; RetinaFace 320x240 float32 "
          f"{med(lambda: shipped.raw(frame, 0.99)):.2f}, int8 {med(lambda: int8.raw(frame, 0.99)):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
