"""What issue 33's photo search and mouth check cost elsewhere: faces-dev found, the check's time, the scan's size.

    python benchmarks/headset_not_worse.py faces-dev [--model vrfer-lower] [--detector retinaface|retinaface-original]
    taskset -c 0 python benchmarks/headset_not_worse.py check-time [--reps 300]
    python benchmarks/headset_not_worse.py flops

faces-dev: for each of the 510 photos of ../shared/data/faces-dev, the clean photo's best RetinaFace face (the original
weights, whichever detector the pipeline uses) is the reference; the pipeline of `vrfer predict` (Pipeline.find_faces: wearer first, photo search, mouth check) is run on the
clean photo and on it behind vrfer's flat synthetic headset (vrfer.occlusion.draw_headset over the reference box). Printed:
photos whose pipeline finds a face overlapping the reference (IoU > 0.3), clean and behind the headset, and those whose
wearer's square holds the reference's mouth (mouth corners' centre) in its read (lower) half. The code before issue
33: run this file with the old package first on the path, e.g.
`git worktree add /tmp/old 61485d0 && PYTHONPATH=/tmp/old/src python benchmarks/headset_not_worse.py faces-dev`.

check-time: Pipeline.with_mouth on one face of the bundled sample photo padded to 950x750 (so that it is not taken
as a face crop): crop + one classifier pass with the representation; min and median ms, 1 thread, batch 1.

flops: RetinaFace MobileNet-0.25's convolutions counted from the shipped ONNX graph at 320x240 and 960x720.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def faces_dev(model: str, folder: Path, detector: str = "retinaface") -> dict:
    from vrfer.faces import get_detector, iou
    from vrfer.occlusion import draw_headset
    from vrfer.inference.pipeline import Pipeline
    pipe = Pipeline(model, threads=1, detector=get_detector(detector, threads=1))
    det = get_detector("retinaface-original", threads=1)   # the reference
    res = {"photos": 0, "found_clean": 0, "found_headset": 0, "mouth_read_headset": 0}
    for p in sorted(folder.iterdir()):
        img = cv2.imread(str(p))
        ref = det.detect(img) if img is not None else []
        if not ref:
            continue
        ref = max(ref, key=lambda f: f.score)
        res["photos"] += 1
        res["found_clean"] += any(iou(f.box, ref.box) > 0.3 for f in pipe.find_faces(img))
        hs = draw_headset(img, ref.box)
        found = pipe.find_faces(hs)
        res["found_headset"] += any(iou(f.box, ref.box) > 0.3 for f in found)
        if found and ref.landmarks is not None:
            pipe.crops(hs, found[:1])
            x, y, s = found[0].square
            mx, my = ref.landmarks[3:].mean(0)
            res["mouth_read_headset"] += bool(x <= mx <= x + s and y + s / 2 <= my <= y + s)
    return res


def check_time(model: str, reps: int) -> dict:
    from vrfer.inference.pipeline import Pipeline
    pipe = Pipeline(model, threads=1)
    img = cv2.imread(str(ROOT / "src" / "vrfer" / "samples" / "photo-surprise-Anna_Chicherova_0001.jpg"))
    img = cv2.copyMakeBorder(img, 200, 200, 300, 300, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    faces = pipe.detector.detect(img)[:1]
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        pipe.with_mouth(img, faces)
        ts.append(time.perf_counter() - t)
    ts = np.array(ts) * 1000
    return {"frame": f"{img.shape[1]}x{img.shape[0]}", "faces": len(faces), "backend": pipe.source.backend,
            "min_ms": round(float(ts.min()), 2), "median_ms": round(float(np.median(ts)), 2)}


def flops() -> dict:
    import onnx
    from onnx import shape_inference
    out = {}
    for h, w in ((240, 320), (720, 960)):
        g = onnx.load(str(ROOT / "src" / "vrfer" / "pretrained" / "retinaface_mnet025.onnx"))
        dims = g.graph.input[0].type.tensor_type.shape.dim
        dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, h, w
        g = shape_inference.infer_shapes(g)
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in list(g.graph.value_info) + list(g.graph.output) + list(g.graph.input)}
        shapes.update({t.name: list(t.dims) for t in g.graph.initializer})
        shapes.update({n.output[0]: list(n.attribute[0].t.dims) for n in g.graph.node if n.op_type == "Constant"})
        total = 0
        for n in g.graph.node:
            out_shape = shapes.get(n.output[0])
            if n.op_type == "Conv" and out_shape and 0 not in out_shape:
                k = shapes[n.input[1]]
                total += 2 * int(np.prod(out_shape)) * k[1] * k[2] * k[3]
        out[f"{w}x{h}"] = round(total / 1e9, 3)
    return {"retinaface_gflop": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("faces-dev", "check-time", "flops"))
    ap.add_argument("--model", default="vrfer-lower")
    ap.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "faces-dev" / "images"))
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--detector", default="retinaface", help="faces-dev: the pipeline's detector (retinaface-original: "
                    "RetinaFace's weights before the fine-tuning behind headsets)")
    a = ap.parse_args(argv)
    if a.part == "faces-dev":
        rep = faces_dev(a.model, Path(a.images), a.detector)
    elif a.part == "check-time":
        rep = check_time(a.model, a.reps)
    else:
        rep = flops()
    print(json.dumps(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
