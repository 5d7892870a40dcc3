"""Run an exported vrfer model without vrfer: numpy, Pillow, OpenCV and onnxruntime only.

    vrfer export --model vrfer-lower --out vrfer-lower.onnx
    python examples/onnx_client.py vrfer-lower.onnx face.jpg               # = vrfer predict --face none --json
    python examples/onnx_client.py vrfer-lower.onnx photo.jpg --face 120,80,200,200

Everything it does is read from the ONNX file's metadata ("vrfer_preprocessing", written by vrfer from
its own code): how the image is loaded and turned gray, how the face square is cut and padded, how it
is resized, which rows the model sees, the mean/std, and what is done to the output probabilities
(class prior, class subset). It prints one JSON line per image, the same as
`vrfer predict --face none --json` (or `--face x,y,w,h`). `--detected x,y,w,h` takes a box from vrfer's
face detector (floats) and applies the FER+ framing that `--face detect` uses.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load_image(path: str) -> np.ndarray:
    """Pillow decode, EXIF orientation -> uint8 gray (H, W) or RGB (H, W, 3) (spec["load"])."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode.startswith("I;16"):
            return (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)     # the high byte
        if mode in ("I", "F"):
            a = np.asarray(im)
            if mode == "F":
                a = np.nan_to_num(a.astype(np.float32))
                a = a * 255.0 if a.size and a.min() >= 0 and a.max() <= 1 else a
                return np.clip(np.rint(a), 0, 255).astype(np.uint8)
            a = a.astype(np.int64)
            hi = int(a.max()) if a.size else 0
            if a.size and int(a.min()) >= 0 and hi > 255:
                a = a * 255 // (65535 if hi <= 65535 else hi)
            return np.clip(a, 0, 255).astype(np.uint8)
        if mode == "1":
            return np.asarray(im.convert("L"))
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        elif mode == "L":
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))


def to_gray(img: np.ndarray, spec: dict) -> np.ndarray:
    """The integer formula of spec["gray"] (OpenCV's BGR2GRAY, exactly)."""
    if img.ndim == 2:
        return img
    wr, wg, wb = spec["gray"]["weights_rgb"]
    shift = spec["gray"]["shift"]
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    return ((wr * r + wg * g + wb * b + (1 << (shift - 1))) >> shift).astype(np.uint8)


def face_square(box, detected: bool, spec: dict) -> tuple[int, int, int]:
    """Face box -> the square (left, top, side) in whole pixels (spec["square"])."""
    x, y, w, h = box
    if detected:
        d = spec["square"]["detect"]
        side = max(d["side_per_width"] * w, 1.0)
        left, top = x + w / 2.0 - side / 2.0, y + h + d["bottom"] * h - side
    else:
        side = float(max(w, h))
        left, top = x + w / 2.0 - side / 2.0, y + h / 2.0 - side / 2.0
    return int(round(left)), int(round(top)), max(1, int(round(side)))   # round(): halves to even


def crop(gray: np.ndarray, left: int, top: int, side: int, spec: dict) -> np.ndarray:
    """Cut the square, repeat the edge pixels where it leaves the image, resize to the crop size."""
    h, w = gray.shape
    x0, y0, x1, y1 = max(0, left), max(0, top), min(w, left + side), min(h, top + side)
    if x0 >= x1 or y0 >= y1:
        raise SystemExit(f"the face square ({left},{top},{side},{side}) lies outside the {w}x{h} image")
    sq = np.pad(gray[y0:y1, x0:x1], ((y0 - top, top + side - y1), (x0 - left, left + side - x1)), mode="edge")
    size = spec["crop"]["size"]
    if side > size:
        return cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)        # "shrink": area
    if side < size:
        return cv2.resize(sq, (size, size), interpolation=cv2.INTER_LINEAR)      # "enlarge": bilinear
    return sq


def model_input(face: np.ndarray, spec: dict) -> np.ndarray:
    """48x48 uint8 crop -> float32 (1, C, H, W): model size, input mode (rows), channels, mean/std."""
    x = face.astype(np.float32)
    s = spec["image_size"]
    if x.shape[0] != s:
        if s < x.shape[0]:
            raise SystemExit("models that shrink the crop (antialiased) are not covered by this example")
        x = cv2.resize(x, (s, s), interpolation=cv2.INTER_LINEAR)               # bilinear, half-pixel centres
    top, bottom = spec["rows"]
    if spec["input_mode"] == "upper-occluded":
        x[: int(round(s * spec["occlusion"]))] = 0.0
    x = x[top:bottom]
    c = spec["input_shape"][1]
    mean = np.asarray(spec["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(-1, 1, 1)
    return ((np.repeat(x[None], c, axis=0) - mean) / std)[None].astype(np.float32)


def post_process(probs: np.ndarray, post: dict, classes: list[str]) -> np.ndarray:
    """spec["postprocess"]: p ~ probs * (target / train_prior) ** tau over the kept classes."""
    p = probs.astype(np.float64)
    shift = None
    if post["prior"] != "train" and post["tau"]:
        if post["train_prior"] is None:
            raise SystemExit("this model carries no training prior: only --prior train works")
        train = np.asarray(post["train_prior"], np.float64)
        target = (np.full(len(classes), 1.0 / len(classes)) if post["prior"] == "uniform"
                  else np.asarray(post["prior"], np.float64))
        shift = post["tau"] * (np.log(target / target.sum()) - np.log(train))
    keep = np.array([c in post["classes"] for c in classes])
    if shift is None and keep.all():
        return p                                                                  # vrfer's default: as it is
    s = np.log(np.maximum(p, 1e-300)) + (0 if shift is None else shift)
    s = np.where(keep, s, -np.inf)
    e = np.exp(s - s.max())
    return e / e.sum()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an ONNX file written by `vrfer export`")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--face", default="none", help="none (the image is the face) or x,y,w,h")
    ap.add_argument("--detected", metavar="X,Y,W,H", help="a face box found by vrfer's detector")
    ap.add_argument("--prior", help="train, uniform or 8 comma-separated class frequencies (default: the file's)")
    ap.add_argument("--prior-tau", type=float, help="strength of the prior shift (default: the file's)")
    ap.add_argument("--classes", help="answer only among these classes (default: the file's)")
    a = ap.parse_args(argv)

    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    spec = json.loads(sess.get_modelmeta().custom_metadata_map["vrfer_preprocessing"])
    classes = spec["classes"]
    post = dict(spec["postprocess"])
    if a.prior is not None:
        post["prior"] = a.prior if a.prior in ("train", "uniform") else [float(v) for v in a.prior.split(",")]
    if a.prior_tau is not None:
        post["tau"] = a.prior_tau
    if a.classes is not None:
        post["classes"] = [c.strip() for c in a.classes.split(",")]
    for path in a.images:
        gray = to_gray(load_image(path), spec)
        h, w = gray.shape
        if a.detected:
            box, detected = [float(v) for v in a.detected.split(",")], True
        elif a.face == "none":
            box, detected = [0, 0, w, h], False
        else:
            box, detected = [int(round(float(v))) for v in a.face.split(",")], False
        face = crop(gray, *face_square(box, detected, spec), spec)
        probs = sess.run([spec["output_names"][1]], {spec["input_name"]: model_input(face, spec)})[0][0]
        p = post_process(probs, post, classes)
        k = int(np.argmax(p))
        print(json.dumps({"source": path, "frame": None, "box": [int(round(v)) for v in box], "label": classes[k],
                          "score": round(float(p[k]), 6),
                          "probs": {c: round(float(v), 6) for c, v in zip(classes, p)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
