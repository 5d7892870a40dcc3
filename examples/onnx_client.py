"""Run an exported vrfer model without vrfer: numpy, Pillow, OpenCV and onnxruntime only.

    vrfer export --model vrfer-lower --out vrfer-lower.onnx
    python examples/onnx_client.py vrfer-lower.onnx face.jpg               # = vrfer predict --face none --json
    python examples/onnx_client.py vrfer-lower.onnx photo.jpg --face 120,80,200,200

Everything it does is read from the ONNX file's metadata ("vrfer_preprocessing", written by vrfer from
its own code): how the image is loaded and turned gray, how the face square is cut and padded, how it
is resized, which rows the model sees, the mean/std, and what is done to the output probabilities
(class prior, class subset). It prints one JSON line per image, the same as
`vrfer predict --face none --json` (or `--face x,y,w,h`). `--detected x,y,w,h` takes a box from vrfer's
face detector (floats, e.g. `Recognizer().find_faces(image)[0].box`) and `--landmarks` its 5 points (eyes,
nose, mouth corners: `.landmarks`), and cuts the square as `--face detect` does: from the nose under the file's
crop rule "keypoints" (the default since vrfer 2026-12-03), from the box under "box", or where the landmarks
are not given or do not allow it (a note on stderr says so: the answer can then differ from vrfer's).

`--profile me.json` applies a person's calibration profile (`vrfer calibrate`) as `vrfer predict --profile`
does (vrfer.calibration.Profile.apply, repeated here: this script imports no vrfer): the enrolled classes'
logits become dot(representation, weight_c) + bias_c from the graph's `representation` output, then the
softmax and the post-processing. A profile made for other weights than the file's `vrfer_model_sha256` is
refused.

Exit codes, as vrfer's: 0 done; 1 done, but some images could not be used (each named in one line on
stderr, the others are still answered); 2 stopped: a bad option or a model file it cannot use (one line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000        # vrfer's limit: larger images are refused before they are decoded
Image.MAX_IMAGE_PIXELS = None  # this script checks the size itself, from the header (MAX_PIXELS)


class Stop(Exception):
    """A bad option or a model file this client cannot use: one line on stderr, exit 2."""


class Unusable(Exception):
    """One image cannot be used: it is named on stderr and the others are still answered (exit 1)."""


def open_image(path: str):
    """The image's header (PIL), or Unusable saying in words why the file is not a usable image."""
    if not os.path.exists(path):
        raise Unusable("file not found")
    if not os.path.isfile(path):
        raise Unusable("not a regular file")
    if os.path.getsize(path) == 0:
        raise Unusable("empty file (0 bytes)")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise Unusable("not an image (unknown or unsupported file format)") from None
    except OSError as e:
        raise Unusable(f"cannot read image: {e}") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise Unusable(f"image too large: {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                       f"{MAX_PIXELS / 1e6:.1f} megapixels")
    return im


def load_image(path: str) -> np.ndarray:
    """Pillow decode, EXIF orientation -> uint8 gray (H, W) or RGB (H, W, 3) (spec["load"])."""
    with open_image(path) as im:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise Unusable(f"truncated or damaged image file ({e})") from None
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


def keypoint_square(box, landmarks, k: dict):
    """The square (left, top, side), floats, placed from the nose (spec["square"]["detect"]["keypoints"]), or
    None where the landmarks do not allow it (the box's square is used then)."""
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    x, y, w, h = box
    nx, ny = pts[2]
    if not np.isfinite(pts).all() or not (x <= nx <= x + w and y <= ny <= y + h):
        return None
    dx, dy = pts[4] - pts[3]
    if math.hypot(dx, dy) > 1e-3:
        roll = math.atan2(dy, dx)
    else:                               # mouth corners given as one point: the nose-to-mouth line
        ax, ay = pts[3] - pts[2]
        roll = math.atan2(-ax, ay)
    if abs(math.degrees(roll)) > k.get("max_roll_degrees", 45.0):   # files before it was written: 45
        return None
    side = max(k["side_per_width"] * w, 1.0)
    c, s = math.cos(roll), math.sin(roll)
    ox, oy = k["centre"][0] * side, k["centre"][1] * side
    cx, cy = nx + c * ox - s * oy, ny + s * ox + c * oy
    return cx - side / 2.0, cy - side / 2.0, side


def face_square(box, detected: bool, spec: dict, landmarks=None) -> tuple[int, int, int]:
    """Face box (and landmarks) -> the square (left, top, side) in whole pixels (spec["square"])."""
    x, y, w, h = box
    d = spec["square"]["detect"]
    sq = (keypoint_square(box, landmarks, d["keypoints"])
          if detected and landmarks is not None and d.get("rule") == "keypoints" else None)
    if sq is not None:
        left, top, side = sq
    elif detected:
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
        raise Unusable(f"the face square ({left},{top},{side},{side}) lies outside the {w}x{h} image")
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
            raise Stop("models that shrink the crop (antialiased) are not covered by this example")
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
            raise Stop("this model carries no training prior: only --prior train works")
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


def load_profile(path: str, sess, spec: dict) -> tuple[list[int], np.ndarray, np.ndarray]:
    """A vrfer profile file -> (rows of the enrolled classes, weight (K, D), bias (K,)), float32 as vrfer reads
    them; Stop when it is not one, or was made for other weights than this file's (spec["calibration"])."""
    if "calibration" not in spec:
        raise Stop("this ONNX file has no representation output (exported by an older vrfer): export it again "
                   "to use a profile")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise Stop(f"{path}: profile not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Stop(f"{path}: cannot read the profile ({e})") from None
    if not isinstance(d, dict) or d.get("format") != "vrfer-profile" or d.get("version") != 1:
        raise Stop(f"{path}: not a vrfer profile (version 1)")
    ours = sess.get_modelmeta().custom_metadata_map.get("vrfer_model_sha256", "")
    theirs = str(d.get("model_sha256", ""))
    if not ours or theirs != ours:
        raise Stop(f"{path}: profile made for model {d.get('model')!r} (weights {theirs[:12]}), not for this file's "
                   f"weights ({ours[:12] or 'not recorded'}): calibrate again with this model")
    classes = spec["classes"]
    try:
        rows = [classes.index(c) for c in d["classes"]]
        weight = np.asarray(d["weight"], np.float32)
        bias = np.asarray(d["bias"], np.float32)
    except (KeyError, ValueError, TypeError) as e:
        raise Stop(f"{path}: damaged profile ({type(e).__name__}: {e})") from None
    dim = spec["representation"]["shape"][1]
    if weight.shape != (len(rows), dim) or bias.shape != (len(rows),):
        raise Stop(f"{path}: damaged profile (`weight` must be {len(rows)} rows of {dim}, `bias` {len(rows)} numbers)")
    return rows, weight, bias


def calibrated_probs(logits: np.ndarray, rep: np.ndarray, profile) -> np.ndarray:
    """spec["calibration"]: the enrolled classes' logits from the profile's rows (float64, as vrfer), softmax."""
    rows, weight, bias = profile
    z = logits.astype(np.float64)
    z[rows] = weight.astype(np.float64) @ rep.astype(np.float64) + bias.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def numbers(option: str, text: str, count: int | None = None) -> list[float]:
    """'1,2.5,3' -> [1.0, 2.5, 3.0]: finite numbers, `count` of them if given; Stop naming the option if not."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values) or (count is not None and len(values) != count):
        raise Stop(f"{option} {text}: expected {count or 'some'} comma-separated numbers")
    return values


def load_model(path: str):
    """The onnxruntime session and vrfer's preprocessing spec of an ONNX file from `vrfer export`."""
    if not os.path.isfile(path):
        raise Stop(f"{path}: {'not a file' if os.path.exists(path) else 'file not found'}")
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:   # onnxruntime's own error types (InvalidProtobuf, Fail...): not an ONNX model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Stop(f"{path}: not an ONNX model onnxruntime can load ({first[:200]})") from None
    try:
        spec = json.loads(sess.get_modelmeta().custom_metadata_map["vrfer_preprocessing"])
    except (KeyError, ValueError):
        raise Stop(f"{path}: no vrfer preprocessing in its metadata (not written by `vrfer export`)") from None
    return sess, spec


def options(a, spec: dict) -> tuple[dict, list[float] | None, bool, list[float] | None]:
    """(post-processing, face box or None for the whole image, box from the detector?, its landmarks or None)
    from the options."""
    classes = spec["classes"]
    post = dict(spec["postprocess"])
    if a.prior is not None:
        post["prior"] = (a.prior if a.prior in ("train", "uniform")
                         else numbers("--prior", a.prior, len(classes)))
        if isinstance(post["prior"], list) and (min(post["prior"]) <= 0):
            raise Stop(f"--prior {a.prior}: class frequencies must be above 0")
    if a.prior_tau is not None:
        if not math.isfinite(a.prior_tau):
            raise Stop(f"--prior-tau {a.prior_tau}: expected a finite number")
        post["tau"] = a.prior_tau
    if a.classes is not None:
        post["classes"] = [c.strip() for c in a.classes.split(",") if c.strip()]
        unknown = [c for c in post["classes"] if c not in classes]
        if unknown or not post["classes"]:
            raise Stop(f"--classes {a.classes}: no class named {', '.join(unknown) or '(empty)'}; "
                       f"known: {', '.join(classes)}")
    if a.detected:
        box, detected = numbers("--detected", a.detected, 4), True
    elif a.face.strip().lower() == "none":
        box, detected = None, False
    else:
        box, detected = [int(round(v)) for v in numbers("--face", a.face, 4)], False
    if box is not None and min(box[2:]) <= 0:
        raise Stop(f"{'--detected' if detected else '--face'} {a.detected or a.face}: width and height must "
                   "be above 0")
    if a.landmarks and not detected:
        raise Stop("--landmarks goes with --detected (the detector's box)")
    landmarks = numbers("--landmarks", a.landmarks, 10) if a.landmarks else None
    if detected and landmarks is None and spec["square"]["detect"].get("rule") == "keypoints":
        print("onnx_client: note: this file places a detected face's square from its landmarks; without "
              "--landmarks the box's square is used", file=sys.stderr)
    return post, box, detected, landmarks


def answer(path: str, sess, spec: dict, post: dict, box, detected: bool, profile=None, landmarks=None) -> dict:
    """One image -> the JSON object `vrfer predict --json` prints for it."""
    classes = spec["classes"]
    gray = to_gray(load_image(path), spec)
    h, w = gray.shape
    box = [0, 0, w, h] if box is None else box
    face = crop(gray, *face_square(box, detected, spec, landmarks), spec)
    x = {spec["input_name"]: model_input(face, spec)}
    if profile is None:
        probs = sess.run([spec["output_names"][1]], x)[0][0]
    else:
        logits, rep = sess.run([spec["output_names"][0], spec["representation"]["output"]], x)
        probs = calibrated_probs(logits[0], rep[0], profile)
    p = post_process(probs, post, classes)
    k = int(np.argmax(p))
    return {"source": path, "frame": None, "box": [int(round(v)) for v in box], "label": classes[k],
            "score": round(float(p[k]), 6), "probs": {c: round(float(v), 6) for c, v in zip(classes, p)}}


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, as vrfer's own commands (argparse would print the usage first)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an ONNX file written by `vrfer export`")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--face", default="none", help="none (the image is the face) or x,y,w,h")
    ap.add_argument("--detected", metavar="X,Y,W,H", help="a face box found by vrfer's detector")
    ap.add_argument("--landmarks", metavar="X1,Y1,...,X5,Y5",
                    help="with --detected: the detector's 5 landmarks (eyes, nose, mouth corners)")
    ap.add_argument("--prior", help="train, uniform or 8 comma-separated class frequencies (default: the file's)")
    ap.add_argument("--prior-tau", type=float, help="strength of the prior shift (default: the file's)")
    ap.add_argument("--classes", help="answer only among these classes (default: the file's)")
    ap.add_argument("--profile", metavar="FILE.json", help="a person's calibration profile (vrfer calibrate)")
    a = ap.parse_args(argv)
    failed = 0
    try:
        sess, spec = load_model(a.model)
        post, box, detected, landmarks = options(a, spec)
        profile = load_profile(a.profile, sess, spec) if a.profile else None
        for path in a.images:
            try:
                row = answer(path, sess, spec, post, box, detected, profile, landmarks)
            except Unusable as e:
                failed += 1
                print(f"onnx_client: {path}: {e}", file=sys.stderr, flush=True)
                continue
            print(json.dumps(row), flush=True)
    except Stop as e:
        print(f"onnx_client: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # the reader has what it wanted (`| head`): stop quietly, as grep does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("onnx_client: interrupted", file=sys.stderr)
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
