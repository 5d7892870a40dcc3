"""Image -> faces -> crops -> probabilities: the one path that `vrfer predict`, `explain`, `serve`, the
Python API (vrfer.recognizer.Recognizer) and the exported model card all follow.

1. load:      any image (file, bytes, numpy array, PIL image) -> uint8 gray (H, W) or BGR (H, W, 3)
              (`load_image`: 8/16-bit, gray/colour/alpha/palette/CMYK, EXIF orientation)
2. faces:     `face` = "detect" (RetinaFace with BlazeFace's second opinion, vrfer.faces), "none" (the image
              is the face) or a box x, y, w, h (`parse_face` reads all three)
3. crop:      each face -> a uint8 48x48 grayscale square (vrfer.faces.align_crop: the FER+ framing
              for a detected face; the box centred in a square of its longer side otherwise; the
              border replicated where the square leaves the image; area-averaged when shrinking)
4. classify:  the crops -> the model's probabilities (torch or onnxruntime, vrfer.preprocess.prepare)
5. adjust:    `PostProcess` / `adjust_probs`: an optional class prior and class subset

`preprocessing_spec` writes steps 1-5 down as data (from the constants the code uses), for the ONNX
file's metadata and examples/onnx_client.py, which repeats them without vrfer.

    >>> from vrfer.pipeline import Pipeline, adjust_probs
    >>> pipe = Pipeline("vrfer-lower", face="none")          # or "detect", or (x, y, w, h)
    >>> faces, crops, probs = pipe.run("face.png")           # probs: (faces, 8), vrfer.classes order
    >>> adjust_probs(probs, pipe.cfg, prior="uniform")        # the model must store its training prior
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .classes import CLASSES
from .errors import ImageTooLargeError, NoFaceError, VrferError
from .faces import (CROP_BOTTOM, CROP_RULE, CROP_SIDE_PER_WIDTH, DETECTOR_NAME, FER_SIZE, KP_CENTRE, KP_MAX_ROLL,
                    KP_SIDE_PER_WIDTH, Face, align_crop, check_box)
from .pretrained import DEFAULT_MODEL

MAX_PIXELS = 64_000_000          # larger images are refused (JPEGs are decoded at a reduced scale)
MIN_SIDE = 8                     # smaller images cannot hold a face
MAX_BOX = 16384                  # largest coordinate of a fixed face box (--face x,y,w,h), in pixels
# OpenCV's BGR -> gray for uint8 (cv2.cvtColor COLOR_BGR2GRAY, what vrfer.faces.to_gray calls), as integers:
# gray = (R * 9798 + G * 19235 + B * 3735 + 2**14) >> 15 (tests/test_pipeline.py checks it is OpenCV's)
GRAY_WEIGHTS_RGB = (9798, 19235, 3735)
GRAY_SHIFT = 15


# ------------------------------------------------------------------------------------------- 1. load

def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float32))
        if a.size and a.max() <= 1.0 and a.min() >= 0.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        a = arr.astype(np.int64)
        hi = int(a.max()) if a.size else 0
        if a.size and int(a.min()) >= 0 and hi > 255:
            a = a * 255 // (65535 if hi <= 65535 else hi)
        return np.clip(a, 0, 255).astype(np.uint8)
    raise VrferError(f"unsupported pixel type {arr.dtype}")


def image_from_array(arr) -> np.ndarray:
    """A numpy image -> uint8 gray (H, W) or BGR (H, W, 3). 3 channels are taken as BGR (OpenCV's
    order), 4 as BGRA (alpha dropped); 16-bit and float images are scaled to 8 bits."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise VrferError(f"image array of shape {arr.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
    arr = _scale_to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def image_from_pil(im) -> np.ndarray:
    """A PIL image of any mode -> uint8 gray (H, W) or BGR (H, W, 3). 16-bit and 32-bit images are
    scaled to 8 bits (16-bit: the high byte), CMYK/YCbCr/LAB/HSV become RGB, transparency is laid over white."""
    from PIL import Image
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return image_from_array(arr)
    if mode == "1":
        return np.asarray(im.convert("L"))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
    elif mode == "L":
        return np.asarray(im)
    elif mode != "RGB":
        im = im.convert("RGB")
    import cv2
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)    # a channel swap, faster than numpy's


def load_image(src, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] | None = None,
               shrink_jpeg: bool = True) -> np.ndarray:
    """A path, encoded bytes, numpy array or PIL image -> uint8 gray (H, W) or BGR (H, W, 3).

    Bad input raises VrferError with one clear sentence: missing, empty (0 bytes), not an image (or not
    one of `formats`, PIL format names), truncated or damaged, or larger than `max_pixels`
    (ImageTooLargeError; with shrink_jpeg a JPEG that large is decoded at 1/2, 1/4 or 1/8 scale instead,
    which costs no more memory than the smaller image). EXIF orientation is applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if isinstance(src, np.ndarray):
        return image_from_array(src)
    if isinstance(src, Image.Image):
        return image_from_pil(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise VrferError("empty image (0 bytes)")
        fp = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise VrferError("file not found")
        if path.is_dir():
            raise VrferError("is a folder, not an image")
        if not path.is_file():   # /dev/zero, a pipe: no size to check, and may never end
            raise VrferError(f"not a regular file ({_file_kind(path)}); an image is a file")
        fp = path
    else:
        raise VrferError(f"cannot read an image from {type(src).__name__}: expected a file path (str or "
                         "pathlib.Path), encoded image bytes, a numpy array or a PIL image")
    try:
        if isinstance(fp, Path) and fp.stat().st_size == 0:
            raise VrferError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=formats)
    except VrferError:
        raise
    except Image.DecompressionBombError:
        size = _header_size(fp)
        if size is None:
            over = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raise ImageTooLargeError(f"image too large: over {over:.0f} megapixels (not decoded); the limit is "
                                     f"{max_pixels / 1e6:.0f} megapixels (scale it down first)") from None
        raise _too_large(*size, max_pixels) from None
    except UnidentifiedImageError:
        what = f" ({', '.join(formats)} expected)" if formats else " (unknown or unsupported file format)"
        raise VrferError(f"not an image{what}") from None
    except OSError as e:
        raise VrferError(f"cannot read image: {e}") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            if im.format == "JPEG" and shrink_jpeg:
                k = 2
                while k < 8 and (w // k) * (h // k) > max_pixels:
                    k *= 2
                im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (w // k, h // k))
            if im.size[0] * im.size[1] > max_pixels:
                raise _too_large(w, h, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                if im.getexif().get(0x0112, 1) != 1:      # EXIF orientation (no copy when there is none)
                    im = ImageOps.exif_transpose(im)
            arr = image_from_pil(im)
        except VrferError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            msg = str(e)
            if "truncated" in msg.lower():
                raise VrferError("truncated image file (the file ends before the image does)") from None
            raise VrferError(f"damaged image file ({msg or type(e).__name__})") from None
    if min(arr.shape[:2]) < 1:
        raise VrferError("image has no pixels")
    return arr


def _too_large(w: int, h: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"image too large: {w}x{h} = {w * h / 1e6:.0f} megapixels (not decoded); the limit "
                              f"is {max_pixels / 1e6:.0f} megapixels (scale it down first)")


def _header_size(fp) -> tuple[int, int] | None:
    """(width, height) from the image's header, for one PIL refuses to open at all (its decompression-bomb
    limit): the format's own reader, picked as Image.open picks it, reads only the header."""
    from PIL import Image
    Image.init()
    try:
        f = open(fp, "rb") if isinstance(fp, Path) else fp
        with f:
            prefix = f.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept and not accept(prefix):
                    continue
                f.seek(0)
                try:
                    return factory(f, "").size
                except (SyntaxError, IndexError, TypeError, ValueError, OSError, EOFError):
                    continue
    except OSError:
        pass
    return None


def _file_kind(path: Path) -> str:
    import stat
    mode = path.stat().st_mode
    return ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a plain file")


# ------------------------------------------------------------------------------------------- 2. faces

def parse_face(spec):
    """'detect' | 'none' | 'x,y,w,h' (or a 4-tuple) -> 'detect' | 'none' | (x, y, w, h) in whole pixels
    (numbers rounded to the nearest pixel); VrferError for anything else."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("detect", "none"):
            return s
        parts = s.split(",")
    else:
        parts = list(spec)
    try:
        box = tuple(int(round(float(v))) for v in parts)
    except (TypeError, ValueError, OverflowError):
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise VrferError(f"face {spec!r}: expected x,y,w,h (pixels, w and h > 0, e.g. 120,80,200,200), "
                         "detect or none")
    if max(abs(v) for v in box) > MAX_BOX:   # the crop is padded out to the box: a huge one cannot be held
        raise VrferError(f"face {spec!r}: x, y, w and h must be within {MAX_BOX} pixels")
    return box


def find_faces(image: np.ndarray, face, detector=None, tracker=None) -> list[Face]:
    """The faces of a loaded image (uint8 gray or BGR) for a parsed `face` setting, best first.

    "none": the whole image; a box: that box (VrferError when it lies outside the image); "detect":
    the tracker's face when a tracker (video, one face followed between frames) is given, else every
    face the detector finds (possibly none)."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise VrferError(f"image is {w}x{h} pixels: too small to hold a face")
    if face == "none":
        return [Face((0.0, 0.0, float(w), float(h)), 1.0)]
    if face != "detect":
        check_box(face, w, h)
        x, y, bw, bh = face
        return [Face((float(x), float(y), float(bw), float(bh)), 1.0)]
    if tracker is not None:
        return list(tracker.update(image))
    return list(detector.detect(image))


def crop_faces(image: np.ndarray, faces: list[Face], face, rule: str | None = None) -> np.ndarray:
    """uint8 (N, 48, 48) grayscale squares of the faces, framed as FER+ faces when detected (the model
    takes the lower half itself: hand it the full square). rule: vrfer.faces.face_square's crop rule for
    detected faces (None: vrfer.faces.CROP_RULE)."""
    if not faces:
        return np.zeros((0, FER_SIZE, FER_SIZE), np.uint8)
    return np.stack([align_crop(image, f.box, FER_SIZE, square=face == "detect", landmarks=f.landmarks, rule=rule)
                     for f in faces])


# --------------------------------------------------------------------------------------- 5. adjust

PRIOR_NAMES = ("train", "uniform")


def train_prior(cfg) -> np.ndarray | None:
    """The model's training class prior (cfg.extra["train_prior"], 8 values in class order), or None."""
    p = (cfg.extra or {}).get("train_prior")
    if p is None:
        return None
    p = np.asarray(p, np.float64).reshape(-1)
    if len(p) != len(cfg.classes) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise VrferError(f"model {cfg.name!r}: train_prior must be {len(cfg.classes)} positive numbers")
    return p / p.sum()


def read_prior_file(path, n_classes: int = len(CLASSES)):
    """--prior FILE: the JSON it holds (a list of class frequencies in class order, or {class: value}), read
    as it is; VrferError naming the file when it cannot be read. PostProcess checks the values."""
    where = f"--prior {path}"
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VrferError(f"{where}: expected train, uniform or a JSON file of {n_classes} class frequencies "
                         "(file not found)") from None
    except (OSError, ValueError) as e:
        raise VrferError(f"{where}: cannot read it as JSON ({e})") from None


def _prior_values(prior, classes) -> np.ndarray:
    """A target prior given as a JSON file, a list of len(classes) numbers or a {class: value} dict."""
    where = "prior"
    if isinstance(prior, (str, os.PathLike)):
        text = str(prior).strip()
        if "," in text and not Path(text).exists():            # "0.3,0.2,..." (a query parameter)
            prior = text.split(",")
        else:
            where = f"--prior {text}"
            prior = read_prior_file(text, len(classes))
    if isinstance(prior, dict):
        unknown = sorted(set(prior) - set(classes))
        missing = [c for c in classes if c not in prior]
        if unknown or missing:
            raise VrferError(f"{where}: needs a value for each class ({', '.join(classes)}); "
                             + (f"unknown {', '.join(map(str, unknown))}" if unknown else f"missing {', '.join(missing)}"))
        prior = [prior[c] for c in classes]
    try:
        p = np.asarray([float(v) for v in prior], np.float64)
    except (TypeError, ValueError):
        raise VrferError(f"{where}: expected {len(classes)} numbers, one per class") from None
    if len(p) != len(classes) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise VrferError(f"{where}: expected {len(classes)} positive numbers, one per class in the order "
                         f"{', '.join(classes)} (to leave a class out, use --classes)")
    return p / p.sum()


def parse_classes(classes, all_classes) -> tuple[str, ...] | None:
    """'a,b,c' or a list of class names -> a tuple in the model's class order; None: all classes. An empty
    set is refused (an answer among no classes has no meaning; a shell's unset variable usually made it)."""
    if classes is None:
        return None
    names = [c.strip() for c in (classes.split(",") if isinstance(classes, str) else classes) if str(c).strip()]
    if not names:
        raise VrferError(f"--classes {classes!r}: no class named; give some of: {', '.join(all_classes)} "
                         "(or leave --classes out for all)")
    unknown = [c for c in names if c not in all_classes]
    if unknown:
        raise VrferError(f"--classes: unknown class {unknown[0]!r}; classes: {', '.join(all_classes)}")
    return tuple(c for c in all_classes if c in names)


class PostProcess:
    """What is done to the model's class scores before they are reported: a class prior and a class subset.

    The model was trained on FER+'s class frequencies (its training prior, 35% neutral ... 0.5% disgust)
    and its probabilities assume them. `prior` is the class prior the answers should assume instead
    (logit adjustment, Menon et al. 2021, applied after training):

        adjusted logit_c = logit_c + tau * (log target_c - log train_prior_c)

        prior="train"    target = the training prior: no change, the plain model (the default)
        prior="uniform"  target = equal frequencies: logit_c - tau * log train_prior_c (+ a constant),
                         probability moves from frequent to rare classes (balanced answers)
        prior=FILE/list  target = the given frequencies (a JSON list in class order, or {class: value})

    tau scales the shift (0: none; 1: the full Bayes correction). `classes` answers only among a subset:
    the other classes get probability 0 and the rest is renormalised (softmax over the subset).
    "uniform" and FILE need the training prior stored with the model (cfg.extra["train_prior"]).

    prior=None (and tau=None) take the model's own default, cfg.extra["default_post"] = {"prior": ...,
    "tau": ...}, chosen by measurement on FER+ valid for a bundled model (docs/RESULTS.md); a model that
    carries none answers plainly (prior "train"). An explicit prior without tau uses tau 1.
    """

    def __init__(self, cfg, prior=None, tau: float | None = None, classes=None):
        self.classes = tuple(cfg.classes)
        if prior is None:
            default = (cfg.extra or {}).get("default_post") or {}
            prior = default.get("prior", "train")
            tau = default.get("tau", 1.0) if tau is None else tau
        self.prior = prior
        tau = 1.0 if tau is None else tau
        try:
            self.tau = float(tau)
        except (TypeError, ValueError):
            raise VrferError(f"--prior-tau {tau!r}: expected a number >= 0") from None
        if not math.isfinite(self.tau) or self.tau < 0:
            raise VrferError(f"--prior-tau {tau}: expected a number >= 0")
        self.subset = parse_classes(classes, self.classes)
        self.train_prior = train_prior(cfg)
        self.shift = None
        if not (isinstance(self.prior, str) and self.prior == "train"):
            target = (np.full(len(self.classes), 1.0 / len(self.classes)) if self.prior == "uniform"
                      else _prior_values(self.prior, self.classes))
            if self.train_prior is None:
                raise VrferError(f"--prior {self.prior if isinstance(self.prior, str) else 'LIST'}: model "
                                 f"{cfg.name!r} carries no training prior (cfg.extra['train_prior']); "
                                 "only --prior train (the plain model) works with it")
            self.target = target
            if self.tau:
                self.shift = self.tau * (np.log(target) - np.log(self.train_prior))
        self.mask = (None if self.subset is None or len(self.subset) == len(self.classes)
                     else np.array([c in self.subset for c in self.classes]))

    @property
    def identity(self) -> bool:
        return self.shift is None and self.mask is None

    def apply(self, scores, logits: bool = False) -> np.ndarray:
        """Probabilities (or logits, logits=True) (N, C) or (C,) -> adjusted probabilities, float64.
        With nothing to adjust, probabilities come back unchanged."""
        scores = np.asarray(scores, np.float64)
        if self.identity and not logits:
            return scores
        if logits:
            s = scores.copy()
        else:
            with np.errstate(divide="ignore"):
                s = np.log(np.maximum(scores, 1e-300))    # log-probabilities = logits minus a per-row constant
        if self.shift is not None:
            s = s + self.shift
        if self.mask is not None:
            s = np.where(self.mask, s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=-1, keepdims=True)

    def spec(self) -> dict:
        """The settings as data (for the ONNX model card and examples/onnx_client.py)."""
        prior = self.prior if isinstance(self.prior, str) and self.prior in PRIOR_NAMES else \
            [float(v) for v in self.target]
        return {"prior": prior, "tau": self.tau, "classes": list(self.subset or self.classes),
                "train_prior": None if self.train_prior is None else [float(v) for v in self.train_prior],
                "formula": "p = softmax over the kept classes of (log probs + tau * (log target - log train_prior)); "
                           "target: train_prior for prior 'train' (no change), equal values for 'uniform', "
                           "else the listed values; classes not kept get 0"}


def softmax(logits) -> np.ndarray:
    """Logits (N, C) -> probabilities, float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True)) if z.size else z
    return e / e.sum(axis=-1, keepdims=True) if z.size else z


def adjust_probs(scores, cfg, prior=None, tau: float | None = None, classes=None, logits: bool = False) -> np.ndarray:
    """Probabilities (or logits) of a model with config `cfg` -> adjusted probabilities (see PostProcess)."""
    return PostProcess(cfg, prior, tau, classes).apply(scores, logits=logits)


# ------------------------------------------------------------------------------------ 4. classify

def load_classifier(model, backend: str = "auto", tta_flip: bool = False, threads: int | None = None):
    """A trained model (name, .safetensors, run folder; .onnx or an object too) -> an object with `.cfg`
    and `.predict_proba(crops)`. backend "auto": an .onnx file with onnxruntime; a bundled model's shipped
    int8 ONNX graph when it was made from the installed weights (vrfer.quantize: the fast path; speed and
    accuracy: docs/RESULTS.md, "int8 classifier"); else PyTorch float32;
    "torch": PyTorch float32; "onnx": onnxruntime (the model's float32 export, or the .onnx file given)."""
    if backend not in ("auto", "torch", "onnx"):
        raise VrferError(f"unknown backend {backend!r}; expected auto, torch or onnx")
    is_onnx = isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx")
    if backend == "auto" and is_onnx:
        backend = "onnx"                # an exported file runs as it is
    elif backend == "auto":
        from .quantize import bundled_int8
        int8 = bundled_int8(model)
        backend, model = ("onnx", str(int8)) if int8 is not None else ("torch", model)
    if is_onnx and backend == "torch":
        raise VrferError(f"{model}: an ONNX file runs with --backend onnx (or auto), not torch")
    if isinstance(model, (str, os.PathLike)) and not str(model).endswith(".onnx"):
        from .models.registry import resolve_trained
        model = str(model)
        resolve_trained(model)          # a clear error for an untrained architecture or a missing file
    if backend == "onnx":
        try:
            from .onnx_backend import OnnxClassifier
        except ImportError as e:
            raise VrferError(f"the onnx backend is not available ({e}); use --backend torch") from None
        return OnnxClassifier(model, intra_op_threads=threads, tta_flip=tta_flip)
    from .inference import TorchClassifier
    return TorchClassifier(model, tta_flip=tta_flip)


class Pipeline:
    """One model, one face setting, one post-processing: images -> faces with probabilities.

    model: bundled model name, .safetensors file or run folder (or a loaded model / .onnx file).
    face: "detect", "none" or a box (x, y, w, h) / "x,y,w,h". backend: "auto", "torch" or "onnx"
    (load_classifier). threads: vrfer.threads (None -> 1, 0 -> one per core).
    prior, prior_tau, classes: see PostProcess (default: the model's own setting, cfg.extra["default_post"]).
    """

    def __init__(self, model=DEFAULT_MODEL, face="detect", backend: str = "auto", threads: int | None = None,
                 tta_flip: bool = False, detector=None, prior=None, prior_tau: float | None = None, classes=None,
                 profile=None):
        self.face = parse_face(face)
        self.threads = threads
        self.backend = backend
        self._model_spec, self._tta_flip = model, tta_flip
        self._torch = None
        self.classifier = load_classifier(model, backend, tta_flip, threads)
        self.cfg = self.classifier.cfg
        self.classes = tuple(self.cfg.classes)
        self.post = PostProcess(self.cfg, prior, prior_tau, classes)
        self.profile = None
        if profile is not None:
            self.set_profile(profile)
        self._detector = detector
        if self.face == "detect" and detector is None:
            _ = self.detector   # now: a missing detector is a setup error, said once

    @property
    def detector(self):
        if self._detector is None:
            from .faces import get_detector
            self._detector = get_detector(threads=self.threads)
        return self._detector

    def new_tracker(self):
        """A tracker that follows the main face from frame to frame (face="detect"), else None."""
        if self.face != "detect":
            return None
        from .tracking import FaceTracker
        return FaceTracker(self.detector)

    def find_faces(self, image: np.ndarray, tracker=None) -> list[Face]:
        return find_faces(image, self.face, self.detector if self.face == "detect" else None, tracker)

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return crop_faces(image, faces, self.face)

    def _is_onnx_file(self) -> bool:
        m = self._model_spec
        return isinstance(m, (str, os.PathLike)) and str(m).endswith(".onnx")

    def _calibrating_classifier(self):
        """The classifier a profile is applied through: the one answering when it gives the representation
        (PyTorch, or an ONNX graph with the `representation` output, vrfer.onnx_backend). Under backend
        "auto", a graph without it (a shipped int8 file exported before that output) gives way to the
        PyTorch model of the same weights; an .onnx file or backend "onnx" without it is refused."""
        if self._tta_flip:
            raise VrferError("calibration does not take flip averaging")
        if getattr(self.classifier, "has_representation", False):
            return self.classifier
        if self.backend != "auto" or self._is_onnx_file():
            where = self._model_spec if self._is_onnx_file() else "the model's ONNX export"
            raise VrferError(f"{where}: has no `representation` output (exported by an older vrfer): export it "
                             "again to calibrate with it, or use --backend torch")
        self.classifier = load_classifier(self._model_spec, "torch", False, self.threads)
        return self.classifier

    def torch_model(self):
        """The PyTorch model of this pipeline's weights: the classifier's own, or loaded once beside an ONNX
        classifier (which keeps answering). Enrolment fits a profile on it (float32, whatever answers)."""
        if hasattr(self.classifier, "model"):
            return self.classifier.model
        if self._torch is None:
            if self._is_onnx_file():
                raise VrferError(f"{self._model_spec}: an ONNX file holds no PyTorch model; calibrate with the "
                                 "model's name or .safetensors file")
            self._torch = load_classifier(self._model_spec, "torch", False, self.threads).model
        return self._torch

    def model_sha256(self) -> str:
        """vrfer.calibration.model_fingerprint of the weights answering, what a profile must name: computed
        from the PyTorch weights, or, for an .onnx file given as the model, as recorded in its metadata at
        export (vrfer.onnx_backend.MODEL_SHA256_KEY)."""
        if not hasattr(self, "_fingerprint"):
            from .calibration import model_fingerprint
            from .onnx_backend import MODEL_SHA256_KEY
            recorded = getattr(self.classifier, "model_sha256", None)
            if self._is_onnx_file():
                if not recorded:
                    raise VrferError(f"{self._model_spec}: records no model fingerprint ({MODEL_SHA256_KEY}; "
                                     "exported by an older vrfer): export it again to use a profile with it")
                self._fingerprint = recorded
            else:
                self._fingerprint = model_fingerprint(self.torch_model())
                if recorded and recorded != self._fingerprint:   # never seen: the cache and int8 file are keyed
                    raise VrferError(f"{getattr(self.classifier, 'path', None) or 'the ONNX graph'}: exported from "
                                     "other weights than the model's; use --backend torch")
        return self._fingerprint

    def set_profile(self, profile) -> None:
        """Calibrate to one person: a vrfer.calibration.Profile, a profile file, or None (no calibration).
        VrferError when the profile was made for other weights."""
        from .calibration import Profile
        if profile is None:
            self.profile = None
            return
        profile = profile if isinstance(profile, Profile) else Profile.load(profile)
        self._calibrating_classifier()
        profile.check_model(self.cfg, self.model_sha256())
        self.profile = profile

    def logits_and_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops -> (logits (N, C), representations (N, D)) from the classifier that answers
        (vrfer.representation; the ONNX graph's `representation` output)."""
        return self._calibrating_classifier().logits_and_features(np.ascontiguousarray(crops))

    def probabilities_and_representation(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 crops -> (probabilities as `probabilities` gives them, the model's own logits, representations):
        one pass of the PyTorch model, for callers that calibrate per stream (vrfer serve's connections)."""
        logits, feats = self.logits_and_features(crops)
        if self.profile is not None:
            return self.profile.probabilities(logits, feats, self.classes), logits, feats
        return softmax(logits), logits, feats

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 48, 48) crops -> the model's own probabilities (N, C), float64, calibrated by the
        profile when there is one (not adjusted by a prior or class subset)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float64)
        if self.profile is not None:
            return self.probabilities_and_representation(crops)[0]
        return np.asarray(self.classifier.predict_proba(np.ascontiguousarray(crops)), dtype=np.float64)

    def classify(self, crops: np.ndarray, post: PostProcess | None = None) -> np.ndarray:
        """uint8 crops -> reported probabilities (N, C): the model's (calibrated by the profile, if any),
        adjusted by `post` (default self.post)."""
        return (post or self.post).apply(self.probabilities(crops))

    def run(self, image, tracker=None) -> tuple[list[Face], np.ndarray, np.ndarray]:
        """An image (anything load_image takes) -> (faces, their crops, their reported probabilities).
        NoFaceError when face="detect" finds no face."""
        img = load_image(image)
        faces = self.find_faces(img, tracker)
        if not faces:
            raise NoFaceError("no face found")
        crops = self.crops(img, faces)
        return faces, crops, self.classify(crops)


# ------------------------------------------------------------------------------------------ the spec

def preprocessing_spec(cfg, post: PostProcess | None = None) -> dict:
    """Steps 1-5 as data, from the constants this module and vrfer.faces / vrfer.preprocess use: what the
    exported ONNX file carries (metadata "vrfer_preprocessing") and examples/onnx_client.py follows."""
    from .occlusion import visible_rows
    post = post or PostProcess(cfg)
    s = cfg.image_size
    top = visible_rows(s, cfg.occlusion)
    c, h, w = cfg.input_shape
    mean = [float(v) for v in cfg.mean]
    std = [float(v) for v in cfg.std]
    m = f"{mean[0]:g}" if len(set(mean)) == 1 else str(mean)
    d = f"{std[0]:g}" if len(set(std)) == 1 else str(std)
    if cfg.input_mode == "visible-half":
        rows = [top, s]
        mode_step = f", then rows [{top}:{s}] (the visible lower part; the top {top} rows are dropped)"
    elif cfg.input_mode == "upper-occluded":
        rows = [0, s]
        mode_step = f", then rows [0:{top}] set to 0 (black, as under a headset)"
    else:
        rows = [0, s]
        mode_step = ""
    chans = "" if c == 1 else f", replicated to {c} identical channels"
    resize_model = "" if s == FER_SIZE else f" resized to {s}x{s} (bilinear)"
    formula = (f"input = (the {FER_SIZE}x{FER_SIZE} gray face crop{resize_model}{mode_step}{chans}, minus {m}, "
               f"divided by {d}), float32 NCHW ({c}x{h}x{w} per face)")
    r, g, b = GRAY_WEIGHTS_RGB
    return {
        "spec_version": 2,
        "classes": list(cfg.classes),
        "load": {"decoder": "Pillow", "exif_orientation": True, "uint16": "high byte (v >> 8)",
                 "alpha": "composited over white", "other_modes": "converted to RGB (Pillow convert)"},
        "gray": {"weights_rgb": [r, g, b], "shift": GRAY_SHIFT,
                 "formula": f"gray = (R*{r} + G*{g} + B*{b} + {1 << (GRAY_SHIFT - 1)}) >> {GRAY_SHIFT} "
                            "(OpenCV COLOR_BGR2GRAY on uint8); gray images as they are"},
        "face": {
            "none": "the box is the whole image: [0, 0, width, height]",
            "box": "the box x,y,w,h as given, in whole pixels",
            "detect": f"boxes and 5 landmarks (left eye, right eye, nose, left and right mouth corner, image "
                      f"left/right) from vrfer's {DETECTOR_NAME} detector (not in this file)",
        },
        "square": _square_spec(),
        "crop": {"size": FER_SIZE, "pad": "replicate",
                 "pad_note": "where the square leaves the image, the nearest edge pixel is repeated",
                 "shrink": "area", "enlarge": "bilinear",
                 "resize_note": "OpenCV cv2.resize with INTER_AREA when the square is larger than "
                                f"{FER_SIZE}, INTER_LINEAR when smaller, nothing when equal"},
        "image_size": s,
        "resize": ("none (the crop is already the model's size)" if s == FER_SIZE else
                   f"{FER_SIZE} -> {s}: bilinear, half-pixel centres (align_corners=False), antialiased when "
                   "shrinking (torch.nn.functional.interpolate)"),
        "input_mode": cfg.input_mode,
        "occlusion": float(cfg.occlusion),
        "rows": rows,
        "mean": mean,
        "std": std,
        "channel_order": "grayscale (0-255)" + ("" if c == 1 else f" replicated to {c} channels"),
        "row_order": "row 0 is the top of the face (Unity textures are stored bottom-up: flip them)",
        "input_shape": ["batch", c, h, w],
        "dtype": "float32",
        "layout": "NCHW",
        "formula": formula,
        "postprocess": post.spec(),
    }


def _square_spec() -> dict:
    """preprocessing_spec's "square": how the face square is placed (vrfer.faces.face_square, keypoint_square)."""
    return {
        "none_or_box": {"side": "max(w, h)", "left": "x + w/2 - side/2", "top": "y + h/2 - side/2"},
        "detect": {"rule": CROP_RULE,
                   "side_per_width": CROP_SIDE_PER_WIDTH, "bottom": CROP_BOTTOM,
                   "side": f"{CROP_SIDE_PER_WIDTH} * w", "left": "x + w/2 - side/2",
                   "top": f"y + h + ({CROP_BOTTOM}) * h - side",
                   "rule_note": "rule 'box': the square above from the box; rule 'keypoints': the square "
                                "in 'keypoints' from the nose (nx, ny), where the landmarks allow it, else "
                                "the square above",
                   "keypoints": {
                       "side_per_width": KP_SIDE_PER_WIDTH, "centre": list(KP_CENTRE),
                       "side": f"{KP_SIDE_PER_WIDTH} * w",
                       "roll": "r = atan2 of the mouth corners' line (right minus left); where the corners "
                               "coincide, atan2(-(mx - nx), my - ny) of the nose-to-mouth line",
                       "left": f"nx + cos(r) * {KP_CENTRE[0]} * side - sin(r) * ({KP_CENTRE[1]}) * side "
                               "- side/2",
                       "top": f"ny + sin(r) * {KP_CENTRE[0]} * side + cos(r) * ({KP_CENTRE[1]}) * side "
                              "- side/2",
                       "fallback": f"the box's square when a landmark is missing or not finite, the nose "
                                   f"lies outside the box, or |r| > {KP_MAX_ROLL:g} degrees"}},
        "rounding": "left, top and side to the nearest integer, halves to even; side at least 1",
    }
