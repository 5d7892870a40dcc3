"""Faces behind real-looking headsets (issue 33): where the model reads, and faces where there are none.

Builds a seeded set of VR-venue photos with vrfer.faces.headsets (headsets of six types with textured fronts, dimples,
logos, reflections, straps, headphones, cables and microphone booms; heads turned up to +-40 degrees yaw and
+-35 pitch; 1-3 people, bystanders without headsets, faces 40-260 px wide, hands with controllers, patterned
walls and shirts), and photos without any visible mouth (a headset alone, hands with controllers, a wall).
People come from clean photos of faces-dev, taiwanese-dev and JAFFE (the clean photo's RetinaFace landmarks give
the mouth); `--split tune` uses the even-numbered photos of each set, `--split test` the odd ones.

Each photo goes through the pipeline's own path (vrfer.inference.pipeline.Pipeline: find_faces, then crops, which sets each
face's `square`, with vrfer-lower's crop geometry). Scored:

    wearers read      headset wearers whose mouth (centre of the mouth corners) lies in the visible (lower)
                      half of a reported square: the part the model reads (wearers whose own headset's front
                      hides the mouth, seen from above, are not scored)
    in upper half     ... whose mouth lies in a square's upper half (blacked out): read from chin and collar
    missed            ... with no square holding the mouth
    false faces       reported squares whose visible half holds nobody's mouth (hidden ones included), per
                      photo (people photos and mouth-free photos apart)

per headset type, yaw and pitch, face width and extras (boom, hands). Times are per photo (full detection).

    python benchmarks/headset_scenes.py [--split tune|test] [--scenes 300] [--empty 60] [--seed 0]
           [--search photo|frame] [--no-check] [--detector retinaface|retinaface-original] [--write DIR] [--examples out.png] [--json out.json]
           [--agree-score S] [--agree-p P] [--mouth-hidden M] [--second-look-sizes 320,640,960]   (ablations)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vrfer.faces import get_detector
from vrfer.faces.scenes import Source, distractor, scene

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SETS = {"faces-dev": "faces-dev/images", "taiwanese-dev": "taiwanese-dev", "jaffe": "jaffe"}


def sources(split: str, root: Path = SHARED / "data", limit: int = 120, sets=tuple(SETS)) -> list[Source]:
    """Clean photos with one sure face (score >= 0.9, at least 100 px wide): the people of the scenes. Their boxes and
    landmarks (the truth) come from RetinaFace's original weights, so that they stay the same whichever detector
    is measured."""
    det = get_detector("retinaface-original")
    out = []
    for name in sets:
        sub = SETS[name]
        files = sorted(p for p in (root / sub).glob("*") if p.suffix.lower() in (".jpg", ".png", ".tiff"))
        files = files[(0 if split == "tune" else 1)::2][:limit]
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None or min(img.shape[:2]) < 200:
                continue
            faces = det.detect(img)
            if len(faces) == 1 and faces[0].score >= 0.9 and faces[0].box[2] >= 100:
                out.append(Source(img, faces[0].landmarks, faces[0].box))
    if not out:
        raise SystemExit(f"no source photos under {root}")
    return out


def build(split: str, n_scenes: int, n_empty: int, seed: int, sets=tuple(SETS)) -> list[tuple[np.ndarray, list, str]]:
    """The set: (image, people, kind) for n_scenes people photos, then n_empty mouth-free ones."""
    srcs = sources(split, sets=sets)
    rng = np.random.default_rng(seed if split == "tune" else seed + 10_000)
    out = []
    for _ in range(n_scenes):
        img, people = scene(srcs, rng)
        out.append((img, people, "people"))
    for _ in range(n_empty):
        img, kind = distractor(rng)
        out.append((img, [], kind))
    return out


def in_visible_half(sq, point) -> bool:
    x, y, s = sq
    return x <= point[0] <= x + s and y + s / 2 <= point[1] <= y + s


def in_upper_half(sq, point) -> bool:
    x, y, s = sq
    return x <= point[0] <= x + s and y <= point[1] < y + s / 2


def score_photo(squares, people) -> tuple[list[str], int]:
    """Each visible person's outcome ("read", "upper", "missed") and the number of false squares (a square on
    a person whose own headset hides the mouth is neither)."""
    outcome = []
    for p in people:
        if not p.visible:
            outcome.append("hidden")
            continue
        if any(in_visible_half(q, p.mouth) for q in squares):
            outcome.append("read")
        elif any(in_upper_half(q, p.mouth) for q in squares):
            outcome.append("upper")
        else:
            outcome.append("missed")
    false = sum(not any(in_visible_half(q, p.mouth) for p in people) for q in squares)
    return outcome, false


def bins(p) -> list[str]:
    yaw, pitch = abs(p.yaw), p.pitch
    out = [f"type {p.headset}", "yaw <15" if yaw < 15 else "yaw 15-30" if yaw < 30 else "yaw 30-40",
           "pitch < -15 (from below)" if pitch < -15 else "pitch > 15 (from above)" if pitch > 15 else "pitch +-15",
           "face <80 px" if p.face_width < 80 else "face 80-150 px" if p.face_width < 150 else "face >=150 px"]
    out += [f"with {e.split('-')[0]}" for e in set(p.extras) if e.split("-")[0] in ("boom", "hand", "headphones")]
    return out


def run(data, pipeline, examples: int = 0):
    """Score every photo; returns the tallies and up to `examples` annotated photos."""
    tally = defaultdict(lambda: defaultdict(int))
    false_by_kind, times, shown = defaultdict(list), [], []
    for img, people, kind in tqdm(data, desc="photos", unit="photo"):
        t0 = time.perf_counter()
        faces = pipeline.find_faces(img)
        if faces:
            pipeline.crops(img, faces)
        times.append(time.perf_counter() - t0)
        squares = [f.square for f in faces]
        outcome, false = score_photo(squares, people)
        false_by_kind[kind].append(false)
        for p, o in zip(people, outcome):
            if o == "hidden":
                continue
            groups = ["all wearers"] + bins(p) if p.headset else ["bystanders"]
            for g in groups:
                tally[g][o] += 1
        if len(shown) < examples:
            shown.append(annotate(img, squares, people))
    return tally, false_by_kind, times, shown


def annotate(img, squares, people) -> np.ndarray:
    out = img.copy()
    for x, y, s in squares:
        cv2.rectangle(out, (x, y), (x + s, y + s // 2), (0, 0, 255), 2)
        cv2.rectangle(out, (x, y + s // 2), (x + s, y + s), (0, 220, 0), 2)
    for p in people:
        cv2.circle(out, (int(p.mouth[0]), int(p.mouth[1])), 5, (255, 0, 255) if p.headset else (255, 200, 0), -1)
    return cv2.resize(out, (400, 300), interpolation=cv2.INTER_AREA)


def report(tally, false_by_kind, times) -> dict:
    rows = {}
    for g, c in sorted(tally.items(), key=lambda kv: (kv[0] != "all wearers", kv[0])):
        n = sum(c.values())
        rows[g] = {"n": n, **{k: round(c[k] / n, 4) for k in ("read", "upper", "missed")}}
    people_false = false_by_kind.pop("people", [])
    empty = [v for vs in false_by_kind.values() for v in vs]
    t = np.array(times) * 1000
    return {"people": rows,
            "false_per_people_photo": round(float(np.mean(people_false)), 4) if people_false else None,
            "false_per_mouth_free_photo": round(float(np.mean(empty)), 4) if empty else None,
            "mouth_free_by_kind": {k: round(float(np.mean(v)), 3) for k, v in false_by_kind.items()},
            "photos": len(times), "ms_per_photo": {"min": round(float(t.min()), 1),
                                                   "median": round(float(np.median(t)), 1),
                                                   "p90": round(float(np.percentile(t, 90)), 1)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("tune", "test"), default="tune")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--empty", type=int, default=60, help="photos with no visible mouth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="vrfer-lower", help="whose crop geometry places the squares")
    ap.add_argument("--write", help="also write the photos and their truth (truth.json) to this folder")
    ap.add_argument("--examples", help="write a grid of 12 annotated photos to this PNG")
    ap.add_argument("--json", help="write the report to this file")
    ap.add_argument("--search", choices=("photo", "frame"), default="photo",
                    help="photo: the pipeline's search of a photo (detect_photo); frame: the detector's video-frame "
                         "search (detect, what vrfer did for photos before issue 33)")
    ap.add_argument("--no-check", action="store_true", help="without the model's mouth check (vrfer.faces.mouth_check)")
    ap.add_argument("--detector", choices=("retinaface", "retinaface-original"), default="retinaface",
                    help="retinaface-original: without the photo's second look by the network fine-tuned behind "
                         "headsets (vrfer before it)")
    # ablations of the pipeline's rules (vrfer.inference.pipeline's constants; defaults: as shipped)
    ap.add_argument("--agree-score", type=float, help="AGREE_SCORE (2: no lower bar for two sure networks)")
    ap.add_argument("--agree-p", type=float, help="AGREE_P, the lower bar")
    ap.add_argument("--mouth-hidden", type=float, help="MOUTH_HIDDEN (0: never read the alternate for a hidden mouth)")
    ap.add_argument("--second-look-sizes", help="which of the second look's passes to run, e.g. 640,960 (of 320,640,960: "
                                                "the scan's side, twice it, the photo search's)")
    a = ap.parse_args(argv)
    from vrfer.inference import pipeline as pipeline_module
    from vrfer.inference.pipeline import Pipeline
    for name, value in (("AGREE_SCORE", a.agree_score), ("AGREE_P", a.agree_p), ("MOUTH_HIDDEN", a.mouth_hidden)):
        if value is not None:
            setattr(pipeline_module, name, value)
    data = build(a.split, a.scenes, a.empty, a.seed)
    if a.write:
        write(data, Path(a.write))
    det = searcher(a.search, a.detector)
    if a.second_look_sizes:
        keep = [("320", "640", "960").index(v) for v in a.second_look_sizes.split(",")]
        every = det.rescue_sides
        det.rescue_sides = lambda h, w: tuple(every(h, w)[i] for i in keep)
    pipe = Pipeline(a.model, threads=1, detector=det)
    if a.no_check:
        pipe._mouth_check = None
    tally, false_by_kind, times, shown = run(data, pipe, 12 if a.examples else 0)
    rep = {"split": a.split, "seed": a.seed, "search": a.search, "detector": a.detector, "mouth_check": pipe.mouth_check is not None,
           "rules": {n: getattr(pipeline_module, n) for n in ("AGREE_SCORE", "AGREE_P", "MOUTH_HIDDEN")},
           "second_look_sizes": a.second_look_sizes or "320,640,960",
           "model": a.model, **report(tally, false_by_kind, times)}
    print(json.dumps(rep, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    if a.examples and shown:
        shown += [np.zeros_like(shown[0])] * (-len(shown) % 4)
        cv2.imwrite(a.examples, np.vstack([np.hstack(shown[i:i + 4]) for i in range(0, len(shown), 4)]))
    return 0


class _FrameSearch:
    """A detector offering only its video-frame search (Pipeline.find_faces then calls detect)."""

    def __init__(self, det):
        self.detect = det.detect


def searcher(search: str, detector: str = "retinaface"):
    from vrfer.faces import create_detector
    det = create_detector(detector, threads=1)
    return det if search == "photo" else _FrameSearch(det)


def write(data, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for i, (img, people, kind) in enumerate(data):
        name = f"{i:04d}-{kind}.jpg"
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        truth.append({"image": name, "kind": kind, "people": [
            {"mouth": list(p.mouth), "face_width": p.face_width, "headset": p.headset, "yaw": p.yaw,
             "pitch": p.pitch, "extras": p.extras, "visible": p.visible} for p in people]})
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
