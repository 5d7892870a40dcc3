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
does (vrfer.personal.calibration.Profile.apply, repeated here: this script imports no vrfer): the enrolled classes'
logits become dot(representation, weight_c) + bias_c from the graph's `representation` output, then the
softmax and the post-processing. A profile made for other weights than the file's `vrfer_model_sha256` is
refused.

What it takes, it takes within vrfer's own limits (vrfer.inference.pipeline, vrfer.personal.profile_check, mirrored below), so that
an input vrfer refuses is refused here too, in one line: images of at most 64 megapixels (a larger JPEG is
decoded at a smaller scale) and at least 8 pixels a side; face boxes within 16384 pixels; profiles that are
regular files of at most 4 MB, nested at most 20 deep, whose rows have exactly the model's representation
width, whose numbers are JSON numbers (not text, not true/false), finite and within +-1000.

Exit codes, as vrfer's: 0 done; 1 done, but some images could not be used (each named in one line on
stderr, the others are still answered); 2 stopped: a bad option or a model file it cannot use (one line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
import warnings

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

# vrfer's limits on what a user brings, mirrored (vrfer.inference.pipeline, vrfer.personal.profile_check): the same input is refused
# here as there, in one line
MAX_PIXELS = 64_000_000        # larger images are refused before they are decoded (a JPEG is decoded smaller)
MIN_SIDE = 8                   # smaller images cannot hold a face
MAX_BOX = 16384                # largest coordinate of a face box given as an option, in pixels
MAX_PROFILE_BYTES = 4 * 2 ** 20
MAX_DEPTH = 20                 # a profile nests 3 deep ({"weight": [[...]]})
MAX_ABS = 1000.0               # a profile's numbers: finite and within +-MAX_ABS
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
    if w * h > MAX_PIXELS and im.format == "JPEG":      # decoded at 1/2, 1/4 or 1/8 scale, as vrfer does
        k = 2
        while k < 8 and (w // k) * (h // k) > MAX_PIXELS:
            k *= 2
        im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (w // k, h // k))
    if im.size[0] * im.size[1] > MAX_PIXELS:
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


def read_profile(path: str):
    """A profile file's JSON value, read as vrfer reads one: a regular file (a pipe or device is refused, never
    opened: opening a pipe waits for a writer), at most MAX_PROFILE_BYTES, UTF-8 (a BOM is accepted), nested at
    most MAX_DEPTH deep, no NaN or Infinity; Stop naming the path otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Stop(f"{path}: profile not found") from None
    except OSError as e:
        raise Stop(f"{path}: cannot read the profile ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise Stop(f"{path}: not a regular file; a profile is a file")
    if st.st_size > MAX_PROFILE_BYTES:
        raise Stop(f"{path}: {st.st_size / 2 ** 20:.1f} MB; a profile is at most {MAX_PROFILE_BYTES // 2 ** 20} MB")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_PROFILE_BYTES + 1).decode("utf-8-sig")
    except OSError as e:
        raise Stop(f"{path}: cannot read the profile ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise Stop(f"{path}: damaged profile (not UTF-8 text: byte {e.start})") from None
    depth = deepest = 0
    in_str = esc = False
    for ch in text:                     # nesting, before parsing: json recurses once per level
        if in_str:
            esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise Stop(f"{path}: damaged profile (nested over {MAX_DEPTH} deep)")

    def no_constant(name):
        raise ValueError(f"{name}: numbers must be finite")

    def once(pairs):        # a key written twice by hand: json would keep the last one silently
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ValueError(f"key {twice[:40]!r} given twice")
        return dict(pairs)
    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=once)
    except ValueError as e:
        raise Stop(f"{path}: damaged profile (not JSON: {e})") from None


def profile_numbers(values, name: str, n: int, why: str) -> np.ndarray:
    """A JSON list of exactly n numbers (not text, not true/false), finite, within +-MAX_ABS -> float32;
    ValueError naming `name`."""
    if not isinstance(values, list):
        raise ValueError(f"`{name}` must be a list of numbers, not {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"`{name}` has {len(values)} numbers, {n} expected{why}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"`{name}` must hold numbers, not {type(v).__name__} ({str(v)[:20]!r})")
        if not (abs(v) <= MAX_ABS):     # an int too large for a float, inf and nan fail too
            raise ValueError(f"`{name}` holds {str(v)[:20]}: numbers must be finite and within +-{MAX_ABS:g}")
    return np.array(values, np.float32)


def load_profile(path: str, sess, spec: dict) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray | None]:
    """A vrfer profile file -> (rows of the enrolled classes, weight (K, D), bias (K,), reference (D,) or None), float32 as vrfer reads
    them; Stop when it is not one, was made for other weights than this file's (spec["calibration"]), or is
    refused by vrfer's checks (vrfer.personal.profile_check, mirrored: fields, types, the representation width, bounds)."""
    if "calibration" not in spec:
        raise Stop("this ONNX file has no representation output (exported by an older vrfer): export it again "
                   "to use a profile")
    d = read_profile(path)
    classes = spec["classes"]
    dim = spec["representation"]["shape"][1]
    try:
        if not isinstance(d, dict) or d.get("format") != "vrfer-profile":
            raise ValueError('not a vrfer profile (no "format": "vrfer-profile")')
        if isinstance(d.get("version"), bool) or d.get("version") != 1:
            raise ValueError(f"profile version {d.get('version')!r}, this client reads 1")
        for key in ("classes", "weight", "bias", "counts", "model", "model_sha256"):
            if key not in d:
                raise ValueError(f"no {key!r} field")
        for key in ("model", "model_sha256", "person", "created"):
            if key in d and not isinstance(d[key], str):
                raise ValueError(f"`{key}` must be text, not {type(d[key]).__name__}")
    except ValueError as e:
        raise Stop(f"{path}: damaged profile ({e})") from None
    ours = sess.get_modelmeta().custom_metadata_map.get("vrfer_model_sha256", "")
    theirs = d["model_sha256"]
    if not ours or theirs != ours:      # said first: made for other weights explains any other misfit
        raise Stop(f"{path}: profile made for model {d['model']!r} (weights {theirs[:12]}), not for this file's "
                   f"weights ({ours[:12] or 'not recorded'}): calibrate again with this model")
    try:
        names = d["classes"]
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise ValueError("`classes` must be a list of class names")
        if not names and "reference" not in d:
            raise ValueError("`classes` is empty and there is no `reference`: the profile changes nothing")
        if len(set(names)) != len(names):
            raise ValueError("`classes` must name each enrolled class once")
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise ValueError(f"names class {unknown[0][:40]!r}, which the model does not have")
        if not isinstance(d["weight"], list) or len(d["weight"]) != len(names):
            raise ValueError(f"`weight` must be {len(names)} rows (one per class in `classes`)")
        weight = np.stack([profile_numbers(r, f"weight[{i}]", dim, " (the model's representation width)")
                           for i, r in enumerate(d["weight"])]) if names else np.zeros((0, dim), np.float32)
        reference = (profile_numbers(d["reference"], "reference", dim, " (the model's representation width)")
                     if "reference" in d else None)
        bias = profile_numbers(d["bias"], "bias", len(names), " (one per class, as `weight` has rows)")
        counts = d["counts"]
        if not isinstance(counts, dict) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                   for n in counts.values()):
            raise ValueError("`counts` must map each class to a whole number of faces")
        for key in ("lam", "blend"):
            if key in d:
                profile_numbers([d[key]], key, 1, "")
        if not 0.0 <= d.get("blend", 1.0) <= 1.0:
            raise ValueError("`blend` must be a number from 0 to 1")
    except ValueError as e:
        raise Stop(f"{path}: damaged profile ({e})") from None
    return [classes.index(c) for c in names], weight, bias, reference


def referenced_head(sess) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The model's referenced head (vrfer.personal.reference), from the file's `vrfer_config` -> extra -> reference_head:
    (weight (C, D), bias (C,), blend), float64, or None when it has none."""
    try:
        head = json.loads(sess.get_modelmeta().custom_metadata_map.get("vrfer_config", "{}")).get("extra", {})
        head = head.get("reference_head")
        if not head:
            return None
        return (np.asarray(head["weight"], np.float64), np.asarray(head["bias"], np.float64),
                float(head["blend"]))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Stop(f"the file's referenced head is damaged ({e})") from None


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def calibrated_probs(logits: np.ndarray, rep: np.ndarray, profile, head=None, reference=None) -> np.ndarray:
    """spec["calibration"]: the enrolled classes' logits from the profile's rows (float64, as vrfer); then, with a
    reference and the file's referenced head, the blend vrfer.personal.reference gives:
    (1 - blend) * log_softmax(z) + blend * log_softmax(W (rep - reference) + b); softmax."""
    rows, weight, bias = profile[:3] if profile is not None else ([], np.zeros((0, len(rep))), np.zeros(0))
    z = logits.astype(np.float64)
    if len(rows):
        z[rows] = weight.astype(np.float64) @ rep.astype(np.float64) + bias.astype(np.float64)
    if reference is not None and head is not None:
        w, b, blend = head
        z = (1 - blend) * log_softmax(z) + blend * log_softmax(w @ (rep.astype(np.float64) - reference) + b)
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
    if box is not None and max(abs(v) for v in box) > MAX_BOX:   # the crop is padded out to the box
        raise Stop(f"{'--detected' if detected else '--face'} {a.detected or a.face}: x, y, w and h must be "
                   f"within {MAX_BOX} pixels")
    if a.landmarks and not detected:
        raise Stop("--landmarks goes with --detected (the detector's box)")
    landmarks = numbers("--landmarks", a.landmarks, 10) if a.landmarks else None
    if detected and landmarks is None and spec["square"]["detect"].get("rule") == "keypoints":
        print("onnx_client: note: this file places a detected face's square from its landmarks; without "
              "--landmarks the box's square is used", file=sys.stderr)
    return post, box, detected, landmarks


def answer(path: str, sess, spec: dict, post: dict, box, detected: bool, profile=None, landmarks=None,
           head=None, reference=None) -> dict:
    """One image -> the JSON object `vrfer predict --json` prints for it."""
    classes = spec["classes"]
    gray = to_gray(load_image(path), spec)
    h, w = gray.shape
    if min(h, w) < MIN_SIDE:
        raise Unusable(f"image is {w}x{h} pixels: too small to hold a face")
    box = [0, 0, w, h] if box is None else box
    square = face_square(box, detected, spec, landmarks)
    face = crop(gray, *square, spec)
    x = {spec["input_name"]: model_input(face, spec)}
    if profile is None and (reference is None or head is None):
        probs = sess.run([spec["output_names"][1]], x)[0][0]
    else:
        logits, rep = sess.run([spec["output_names"][0], spec["representation"]["output"]], x)
        probs = calibrated_probs(logits[0], rep[0], profile, head, reference)
    p = post_process(probs, post, classes)
    k = int(np.argmax(p))
    return {"source": path, "frame": None, "box": [int(round(v)) for v in box], "square": list(square),
            "label": classes[k],
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
    ap.add_argument("--reference", metavar="FILE.json",
                    help="read the face against the wearer's neutral reference, from a profile carrying one "
                         "(vrfer calibrate neutral=...), with the file's referenced head: as vrfer predict --reference")
    a = ap.parse_args(argv)
    failed = 0
    try:
        sess, spec = load_model(a.model)
        post, box, detected, landmarks = options(a, spec)
        profile = load_profile(a.profile, sess, spec) if a.profile else None
        head = referenced_head(sess) if (a.profile or a.reference) and "calibration" in spec else None
        reference = profile[3] if profile is not None and head is not None else None   # a profile's own, as vrfer
        if a.reference:
            if head is None:
                raise Stop("this ONNX file has no referenced head: it cannot read a face against a reference")
            reference = load_profile(a.reference, sess, spec)[3]
            if reference is None:
                raise Stop(f"{a.reference}: the profile carries no reference (calibrate with neutral=... to make one)")
        for path in a.images:
            try:
                row = answer(path, sess, spec, post, box, detected, profile, landmarks, head, reference)
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
