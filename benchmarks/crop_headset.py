"""How much of a synthetic VR headset reaches into the half of the crop the model looks at, and what it costs
in accuracy: the detector box's crop (the FER+ framing from the box, vrfer.faces.square_box) against the
keypoint crop (the same framing placed from the nose and mouth, vrfer.faces.keypoint_square), side by side.

For each photo of faces-dev, JAFFE and taiwanese-dev: detect on the clean photo (the reference face), draw
vrfer's synthetic headset from that box (vrfer.occlusion.draw_headset, as benchmarks/detect_headset.py), detect
again (found: IoU > 0.3 with the reference). Per data set and crop:

    headset share   share of the pixels of the crop's lower half (what vrfer-lower looks at) that are
                    headset (strap included), on the found headset faces: median and p90
    detected        clean faces found / photos; headset faces found / clean faces found (one detector, so
                    the same for both crops)
    acc clean       top-1 accuracy of vrfer-lower or --model (torch, default answers) on the clean crops
    acc headset     the same photos with the headset; a headset face not found counts as wrong
    square IoU      the headset crop's square against the clean face's square of the same crop rule

JAFFE and taiwanese-dev have no contempt: their accuracy is over their 7 classes (the model may still answer
contempt). faces-dev's labels are weak (one student's judgement): read its accuracy as a rough check.

--fit prints the keypoint crop's geometry fitted on 600 FER+ test faces (the framing the model was trained on; what
vrfer.faces' KP_* constants hold) and, in the same terms, the box's square on each set's clean photos.

    python benchmarks/crop_headset.py [--sets faces-dev,jaffe,taiwanese-dev] [--limit N] [--cache FILE] [--fit]
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import platform
import subprocess
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("VRFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SETS = ("faces-dev", "jaffe", "taiwanese-dev")
CROPS = ("box", "keypoints")


def labelled_photos(name: str) -> list[tuple[Path, str]]:
    """(photo, class name) of a data set under SHARED/data."""
    root = SHARED / "data" / name
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if name == "faces-dev":
        return [(root / "images" / r["image"], r["emotion"].strip().lower()) for r in rows]
    return [(root / r["file"], r["label_name"].strip().lower()) for r in rows]


def detections(name: str, limit: int, cache: Path | None) -> list[dict]:
    """Per photo: the clean face, BlazeFace's clean face (for --fit) and the headset face (None: not found)."""
    from vrfer.faces import get_detector, iou
    from vrfer.occlusion import draw_headset
    from vrfer.inference.images import load_image
    key = cache.with_name(f"{cache.stem}-{name}-{limit}{cache.suffix}") if cache else None
    if key and key.is_file():
        return pickle.loads(key.read_bytes())
    det = get_detector(threads=1)
    out = []
    for path, label in labelled_photos(name)[: limit or None]:
        img = load_image(path)
        faces = det.detect(img)
        row = {"path": path, "label": label, "clean": faces[0] if faces else None, "blaze": None, "headset": None}
        if faces:
            ref = faces[0]
            blaze = det.blazeface.detect(img, 0.3) + det.blazeface.detect(img, 0.3, det.BLAZE_PAD)
            row["blaze"] = max((f for f in blaze if iou(f.box, ref.box) > 0.3), key=lambda f: f.score, default=None)
            near = [f for f in det.detect(draw_headset(img, ref.box)) if iou(f.box, ref.box) > 0.3]
            row["headset"] = near[0] if near else None
        out.append(row)
    if key:
        key.write_bytes(pickle.dumps(out))
    return out


def headset_share(shape, ref_box, square) -> float:
    """Share of the lower half of the crop `square` that is synthetic headset drawn from ref_box."""
    from vrfer.faces import FER_SIZE, crop_square
    from vrfer.occlusion import draw_headset
    mask = draw_headset(np.zeros(shape[:2], np.uint8), ref_box, color=(255, 255, 255))
    half = crop_square(mask, *square, FER_SIZE)[FER_SIZE // 2:]
    return float(half.mean() / 255.0)


def square_iou(a, b) -> float:
    from vrfer.faces import iou
    return iou((a[0], a[1], a[2], a[2]), (b[0], b[1], b[2], b[2]))


def measure(rows: list[dict], pipe) -> dict:
    """The table's figures for one data set, per crop rule."""
    from vrfer.classes import CLASSES
    from vrfer.faces import face_square
    from vrfer.occlusion import draw_headset
    from vrfer.inference.pipeline import crop_faces
    from vrfer.inference.images import load_image
    found = [r for r in rows if r["clean"] is not None]
    out = {"photos": len(rows), "clean found": len(found),
           "headset found": sum(r["headset"] is not None for r in found)}
    labels = np.array([CLASSES.index(r["label"]) for r in found])
    crops = {(rule, kind): [] for rule in CROPS for kind in ("clean", "headset")}
    for rule in CROPS:
        out[rule] = {"share": [], "iou": []}
    for r in found:
        img = load_image(r["path"])
        hs = draw_headset(img, r["clean"].box)
        for rule in CROPS:
            crops[rule, "clean"].append(crop_faces(img, [r["clean"]], "detect", rule)[0])
            h = r["headset"]
            crops[rule, "headset"].append(crop_faces(hs, [h], "detect", rule)[0] if h else None)
            if h is not None:
                sq = face_square(h.box, h.landmarks, rule)
                out[rule]["share"].append(headset_share(img.shape, r["clean"].box, sq))
                out[rule]["iou"].append(square_iou(sq, face_square(r["clean"].box, r["clean"].landmarks, rule)))
    for rule in CROPS:
        for kind in ("clean", "headset"):
            have = [c is not None for c in crops[rule, kind]]
            pred = np.full(len(found), -1)
            if any(have):
                probs = pipe.classify(np.stack([c for c in crops[rule, kind] if c is not None]))
                pred[np.array(have)] = probs.argmax(1)
            out[rule][f"acc {kind}"] = float((pred == labels).mean()) if len(found) else float("nan")
    return out


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(results: dict) -> None:
    print(f"{'set':<14} {'crop':<10} {'photos':>6} {'clean found':>11} {'headset found':>13} "
          f"{'share med':>9} {'share p90':>9} {'sq IoU med':>10} {'acc clean':>9} {'acc headset':>11} {'diff':>6}")
    for name, res in results.items():
        for rule in CROPS:
            r = res[rule]
            sh = np.array(r["share"]) if r["share"] else np.zeros(1)
            print(f"{name:<14} {rule:<10} {res['photos']:>6} "
                  f"{res['clean found'] / max(res['photos'], 1):>11.1%} "
                  f"{res['headset found'] / max(res['clean found'], 1):>13.1%} "
                  f"{np.median(sh):>9.1%} {np.percentile(sh, 90):>9.1%} {np.median(r['iou']):>10.2f} "
                  f"{r['acc clean']:>9.1%} {r['acc headset']:>11.1%} "
                  f"{100 * (r['acc headset'] - r['acc clean']):>+6.1f}")


def frame_in_face_axes(square, landmarks, box) -> tuple[float, float, float]:
    """A square's (side per box width, centre minus nose along the face's axes per side): what KP_* hold."""
    import math
    from vrfer.faces import face_roll
    x, y, side = square
    roll = face_roll(landmarks)
    dx, dy = x + side / 2 - landmarks[2][0], y + side / 2 - landmarks[2][1]
    c, s = math.cos(roll), math.sin(roll)
    return side / box[2], (c * dx + s * dy) / side, (-s * dx + c * dy) / side


def fer_faces(n: int = 600):
    """The first n FER+ test faces scaled to 192 px inside a 384 px frame (the border replicated), with the
    square they fill (what the model was trained on): the measurement behind vrfer.faces' crop constants."""
    import cv2
    for f in sorted((SHARED / "data" / "ferplus" / "FER2013Test").glob("*.png"))[:n]:
        g = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (192, 192), interpolation=cv2.INTER_CUBIC)
        yield cv2.copyMakeBorder(g, 96, 96, 96, 96, cv2.BORDER_REPLICATE), (96.0, 96.0, 192.0)


def fit(data: dict) -> int:
    """The keypoint crop's geometry on FER+'s own framing, and what the box's square (square_box) gives on
    the clean photos of each set, in the same terms."""
    from vrfer.faces import KP_CENTRE, KP_SIDE_PER_WIDTH, face_square, get_detector, square_box
    det = get_detector(threads=1)
    rows = []
    for img, target in fer_faces():
        faces = det.detect(img)
        if faces and faces[0].landmarks is not None and faces[0].detector == "retinaface":
            rows.append(frame_in_face_axes(target, faces[0].landmarks, faces[0].box))
    med = np.median(np.array(rows), 0)
    print(f"FER+ test ({len(rows)} faces): side per box width {med[0]:.3f}, centre minus nose per side "
          f"({med[1]:+.3f}, {med[2]:+.3f}); in vrfer.faces: {KP_SIDE_PER_WIDTH}, {KP_CENTRE}")
    for name, rows_ in data.items():
        clean = [r["clean"] for r in rows_ if r["clean"] is not None and r["clean"].landmarks is not None]
        m = np.median([frame_in_face_axes(square_box(f.box), f.landmarks, f.box) for f in clean], 0)
        ious = [square_iou(face_square(f.box, f.landmarks, "keypoints"), square_box(f.box)) for f in clean]
        print(f"{name} ({len(clean)} clean faces): the box's square has side per width {m[0]:.3f}, centre minus "
              f"nose ({m[1]:+.3f}, {m[2]:+.3f}); keypoint square vs box square IoU median {np.median(ious):.2f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, default=0, help="the first N photos of each set (0: all)")
    ap.add_argument("--cache", type=Path, help="keep the detections in files named after this one")
    ap.add_argument("--fit", action="store_true", help="fit the keypoint crop's geometry (see above)")
    ap.add_argument("--model", default="vrfer-lower", help="the classifier of the accuracy columns")
    a = ap.parse_args(argv)
    data = {name: detections(name, a.limit, a.cache) for name in a.sets.split(",")}
    if a.fit:
        return fit(data)
    from vrfer.inference.pipeline import Pipeline
    pipe = Pipeline(a.model, face="detect", backend="torch", threads=1)
    print(f"{a.model}, torch backend, default answers; detector {pipe.detector.name} (1 thread); CPU: {cpu_name()}")
    table({name: measure(rows, pipe) for name, rows in data.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
