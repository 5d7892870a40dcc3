"""How steady the face tracker is, and how well it follows: synthetic videos of faces behind a headset.

    python benchmarks/bench_tracking.py [--photos 20] [--noise 2]

For each of the first --photos faces-dev photos: the synthetic headset is drawn (vrfer.occlusion.draw_headset,
from the box found on the clean photo), the photo is scaled to 260 px and moved over a 640x480 background
on a known path, 30 frames per second:

    still 20 | right 6 px/frame for 20 | still 20 | hidden 10 (a hand: a flat patch over the face) | still 20

with Gaussian pixel noise of --noise gray levels on every frame (a camera's; 0: identical still frames).
Each frame goes through the tracker and the default classifier (Recognizer: crop + classify). Printed:
    box error      the square the crop is cut from (vrfer.faces.square_box) against the path, share of its
                   side, after removing the constant offset (the median over the video)
    still boxes    distinct boxes per still phase, after 3 frames of settling (goal 1)
    label flips    changes of the top class within still phases, after settling (goal 0)
    re-found       frames after the face reappears until the box's square is back on it (IoU > 0.5 with the
                   path's square; 0: on the first frame)
Works with the tracker of earlier versions too (vrfer.faces.FaceTracker), to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("VRFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
PHASES = [("still", 20), ("move", 20), ("still", 20), ("hidden", 10), ("still", 20)]
SETTLE = 3


def video(photo: Path, noise: float, seed: int):
    import cv2
    from vrfer.faces import RetinaFaceDetector
    from vrfer.occlusion import draw_headset
    img = cv2.imread(str(photo))
    faces = RetinaFaceDetector(threads=1).detect(img)
    if not faces:
        return None
    img = cv2.resize(draw_headset(img, faces[0].box), (260, 260), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    bg = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    x, y = 80, 110
    frames, offsets, phases = [], [], []
    for phase, n in PHASES:
        for _ in range(n):
            if phase == "move":
                x += 6
            f = bg.copy()
            f[y:y + 260, x:x + 260] = img
            if phase == "hidden":
                f[y + 20:y + 250, x + 20:x + 240] = (150, 170, 190)
            if noise:
                f = np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
            frames.append(f)
            offsets.append((x, y))
            phases.append(phase)
    return frames, offsets, phases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--noise", type=float, default=2.0)
    ap.add_argument("--verbose", action="store_true", help="one line per video")
    ap.add_argument("--no-blazeface", action="store_true",
                    help="the full search without BlazeFace's second opinion (RetinaFace passes only)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a FaceTracker argument, e.g. --set min_cutoff=2 (repeatable)")
    a = ap.parse_args(argv)
    from vrfer.faces import iou, square_box
    from vrfer.recognizer import Recognizer
    try:
        from vrfer.faces.tracking import FaceTracker
    except ImportError:       # an earlier vrfer: the tracker lived in vrfer.faces
        from vrfer.faces import FaceTracker

    if a.no_blazeface:
        from vrfer.faces import RetinaFaceDetector
        rec = Recognizer(threads=1, detector=RetinaFaceDetector(threads=1, blazeface=False))
    else:
        rec = Recognizer(threads=1)
    files = sorted((SHARED / "data" / "faces-dev" / "images").glob("*.jpg"))[: a.photos]
    errors, distinct, flips, refound, lost = [], [], 0, [], 0
    for i, photo in enumerate(files):
        v = video(photo, a.noise, i)
        if v is None:
            continue
        frames, offsets, phases = v
        tracker = FaceTracker(rec.detector, **{k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)})
        boxes, labels = [], []
        for f in frames:
            faces = tracker.update(f)
            boxes.append(faces[0].box if faces else None)
            labels.append(int(np.argmax(rec.classify(rec.crops(f, faces))[0])) if faces else None)
        seen = [j for j, p in enumerate(phases) if p != "hidden" and boxes[j] is not None]
        if a.verbose:
            print(f"  {photo.name}: no box on {sum(b is None for b in boxes)} frames; region pass found the face "
                  f"{getattr(tracker, 'confirmed', '?')}, held {getattr(tracker, 'held', '?')}, full searches "
                  f"{getattr(tracker, 'searched', '?')}")
        lost += sum(1 for j, p in enumerate(phases) if p != "hidden" and boxes[j] is None)
        res = np.array([[sq[0] - offsets[j][0], sq[1] - offsets[j][1], sq[2]]
                        for j in seen for sq in [square_box(boxes[j])]])
        ref = np.median(res, 0)
        errors += list(np.abs(res - ref).max(1) / ref[2])
        start = 0
        mine = []
        for phase, n in PHASES:
            idx = range(start + SETTLE, start + n)
            if phase == "still":
                distinct.append(len({boxes[j] for j in idx if boxes[j] is not None}))
                lab = [labels[j] for j in idx if labels[j] is not None]
                flips += sum(p != q for p, q in zip(lab, lab[1:]))
                mine.append((distinct[-1], sum(p != q for p, q in zip(lab, lab[1:]))))
            if phase == "hidden":
                after = start + n

                def on_face(j):
                    if boxes[j] is None:
                        return False
                    sx, sy, side = square_box(boxes[j])
                    return iou((sx, sy, side, side), (ref[0] + offsets[j][0], ref[1] + offsets[j][1], ref[2], ref[2])) > 0.5
                k = next((k for k in range(20) if on_face(after + k)), None)
                refound.append(k)
            start += n
        if a.verbose:
            print(f"    still phases (boxes, label flips): {mine}; re-found after {refound[-1]} frames")
    e = sorted(errors)
    print(f"{len(refound)} synthetic videos ({sum(n for _, n in PHASES)} frames each, faces-dev photos with a "
          f"headset, pixel noise {a.noise}); tracker {FaceTracker.__module__}.FaceTracker")
    print(f"  box error (share of the crop side): median {statistics.median(e):.3f}, p90 "
          f"{e[int(0.9 * (len(e) - 1))]:.3f}, max {e[-1]:.3f}")
    print(f"  still phases: distinct boxes per phase mean {np.mean(distinct):.2f} (max {max(distinct)}); "
          f"phases with one box {sum(d == 1 for d in distinct)}/{len(distinct)}")
    print(f"  label flips within still phases: {flips} (over {len(distinct)} phases of {20 - SETTLE} frames)")
    ok = [k for k in refound if k is not None]
    print(f"  re-found after the hand: {len(ok)}/{len(refound)} videos, frames after reappearing: median "
          f"{statistics.median(ok) if ok else float('nan')}, max {max(ok) if ok else float('nan')}")
    print(f"  frames without a box while the face was visible: {lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
