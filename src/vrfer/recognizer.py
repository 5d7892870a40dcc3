"""Photos, folders, videos and webcams -> facial expressions of people wearing a VR headset.

    from vrfer.recognizer import Recognizer
    rec = Recognizer()                      # bundled model, face detection, PyTorch
    for p in rec.predict("photo.jpg"):      # a path, a numpy BGR/gray array or a PIL image
        print(p.box, p.label, p.probs)

The pipeline: find each face (vrfer.faces: RetinaFace, also behind a headset), cut the square crop
that FER+ training faces are framed by, scale it to 48x48 grayscale, and hand the full square to the
classifier (its input mode takes the lower half itself). With face="none" the image already is the
face crop; with face=(x, y, w, h) a fixed region (a fixed camera in a VR rig) is the crop.

Video and webcams: one result per frame and face; the face is tracked from frame to frame, and
`smoothing` = ALPHA in [0, 1) turns on an exponential moving average of the probabilities:
smoothed_t = ALPHA * smoothed_{t-1} + (1 - ALPHA) * probs_t (0: off; 0.8: about the last 5 frames).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from .classes import CLASSES
from .errors import VrferError, native_stderr_silenced
from .faces import FER_SIZE, Face, align_crop, check_box, iou, parse_box, to_bgr
from .pretrained import DEFAULT_MODEL

MAX_PIXELS = 64_000_000          # larger images are refused (JPEGs are decoded at a reduced scale)
MIN_SIDE = 8                     # smaller images cannot hold a face
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm",
              ".jfif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
              ".ts", ".mts"}


def samples_path() -> Path:
    """The folder of sample images bundled with vrfer (`vrfer predict --samples` runs on it)."""
    return Path(str(resources.files("vrfer").joinpath("samples")))


# ------------------------------------------------------------------------------------------ results

@dataclass
class FacePrediction:
    """One face in one image or video frame."""

    source: str                          # file, folder/file, "cam:0", or "" for an in-memory image
    frame: int | None                    # frame index in a video or webcam stream, None for a photo
    box: tuple[int, int, int, int]       # face box x, y, w, h in image pixels
    probs: dict[str, float]              # the 8 FER+ classes (vrfer.classes.CLASSES order)
    smoothed: dict[str, float] | None = None   # EMA of probs over frames, when smoothing is on
    face_score: float | None = None      # detector confidence (None: face not detected but given)

    @property
    def label(self) -> str:
        """The most probable class (of the smoothed probabilities when smoothing is on)."""
        p = self.smoothed if self.smoothed is not None else self.probs
        return max(p, key=p.get)

    @property
    def score(self) -> float:
        p = self.smoothed if self.smoothed is not None else self.probs
        return p[self.label]

    def to_dict(self) -> dict:
        d = {"source": self.source, "frame": self.frame, "box": list(self.box), "label": self.label,
             "score": round(self.score, 6), "probs": {k: round(v, 6) for k, v in self.probs.items()}}
        if self.smoothed is not None:
            d["smoothed"] = {k: round(v, 6) for k, v in self.smoothed.items()}
        if self.face_score is not None:
            d["face_score"] = round(self.face_score, 4)
        return d


# ------------------------------------------------------------------------------------------- images

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
    scaled to 8 bits, CMYK/YCbCr/LAB/HSV become RGB, transparency is laid over white."""
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
    return np.ascontiguousarray(np.asarray(im)[..., ::-1])


def load_image(src, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A path, numpy array or PIL image -> uint8 gray (H, W) or BGR (H, W, 3).

    Bad files raise VrferError with one clear sentence: missing, empty (0 bytes), not an image,
    truncated or damaged, or larger than `max_pixels` (a JPEG that large is decoded at 1/2, 1/4 or
    1/8 scale instead, which costs no more memory than the smaller image). EXIF rotation is applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if isinstance(src, np.ndarray):
        return image_from_array(src)
    if isinstance(src, Image.Image):
        return image_from_pil(src)
    path = Path(src)
    if not path.exists():
        raise VrferError("file not found")
    if path.is_dir():
        raise VrferError("is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise VrferError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except VrferError:
        raise
    except Image.DecompressionBombError:
        over = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise VrferError(f"image too large: over {over:.0f} megapixels (not decoded); the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels (scale it down first)") from None
    except UnidentifiedImageError:
        raise VrferError("not an image (unknown or unsupported file format)") from None
    except OSError as e:
        raise VrferError(f"cannot read image: {e}") from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            if im.format == "JPEG":
                k = 2
                while k < 8 and (w // k) * (h // k) > max_pixels:
                    k *= 2
                im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (w // k, h // k))
            if im.size[0] * im.size[1] > max_pixels:
                raise VrferError(f"image too large: {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                                 f"{max_pixels / 1e6:.0f} megapixels (scale it down first)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                im = ImageOps.exif_transpose(im)
            arr = image_from_pil(im)
        except VrferError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            msg = str(e)
            if "truncated" in msg.lower():
                raise VrferError("truncated image file (the file ends before the image does)") from None
            raise VrferError(f"damaged image file ({msg or type(e).__name__})") from None
    return arr


# -------------------------------------------------------------------------------------- inputs

@dataclass
class Item:
    """One thing to predict on: an image, a video file, or a webcam."""

    kind: str          # "image" | "video" | "camera"
    name: str          # what the user sees in results and messages
    path: str | int    # file path, or camera index
    rel: str = ""      # path relative to the folder it was found in (names annotated copies)


def parse_camera(text: str) -> int | None:
    """'cam:0' / 'camera:1' / 'webcam:0' -> 0 / 1 / 0; anything else -> None."""
    t = str(text).strip().lower()
    for prefix in ("cam:", "camera:", "webcam:"):
        if t.startswith(prefix):
            rest = t[len(prefix):]
            if rest.isdigit():
                return int(rest)
            raise VrferError(f"{text!r}: a camera is cam:N with N a number, e.g. cam:0")
    return None


def expand_inputs(paths: list[str]) -> tuple[list[Item], list[tuple[str, str]]]:
    """Paths -> items to run, and (name, problem) for those that cannot be run. Folders are walked
    recursively for image and video files (other files there are skipped); a file named directly is
    always tried, whatever its extension."""
    items: list[Item] = []
    bad: list[tuple[str, str]] = []
    for p in paths:
        cam = parse_camera(p)
        if cam is not None:
            items.append(Item("camera", f"cam:{cam}", cam))
            continue
        path = Path(p)
        if path.is_dir():
            found = []
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    ext = os.path.splitext(f)[1].lower()
                    if ext in IMAGE_EXTS or ext in VIDEO_EXTS:
                        fp = Path(root) / f
                        found.append(Item("video" if ext in VIDEO_EXTS else "image", str(fp), str(fp),
                                          str(fp.relative_to(path))))
            if not found:
                bad.append((str(p), "no image or video files in this folder"))
            items.extend(found)
        elif path.exists():
            kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
            items.append(Item(kind, str(p), str(p), path.name))
        else:
            bad.append((str(p), "file not found"))
    return items, bad


# ----------------------------------------------------------------------------------------- recognizer

def _load_classifier(model, backend: str, tta_flip: bool = False, threads: int | None = None):
    if backend == "onnx":
        try:
            from .onnx_backend import OnnxClassifier
        except ImportError as e:
            raise VrferError(f"the onnx backend is not available ({e}); use --backend torch") from None
        return OnnxClassifier(model, intra_op_threads=threads, tta_flip=tta_flip)
    if backend != "torch":
        raise VrferError(f"unknown backend {backend!r}; expected torch or onnx")
    from .inference import TorchClassifier
    if not isinstance(model, str):
        return TorchClassifier(model, tta_flip=tta_flip)
    from .models.registry import bundled_models, create_model, get_config
    path = Path(model)
    if path.suffix == ".safetensors" or path.is_dir() or os.sep in model:
        if not path.exists():
            raise VrferError(f"{model}: model file not found")
        return TorchClassifier(create_model(model), tta_flip=tta_flip)
    if model == DEFAULT_MODEL and model not in bundled_models():
        raise VrferError(f"the bundled model {model!r} is not installed with this copy of vrfer; "
                         "give a trained model with --model PATH.safetensors")
    try:
        cfg = get_config(model)
    except VrferError:  # name the choices that work here: trained models only
        raise VrferError(f"unknown model {model!r}; trained models: {', '.join(sorted(bundled_models()))} "
                         "(or give a .safetensors file or a training run folder)") from None
    if not cfg.weights:
        raise VrferError(f"{model!r} is an architecture with untrained weights, not a trained model; give a "
                         f"trained model ({', '.join(sorted(bundled_models()))}) or a .safetensors file")
    return TorchClassifier(create_model(model), tta_flip=tta_flip)


class Recognizer:
    """Facial expressions of headset wearers in photos, frames and video.

    model: bundled model name or .safetensors path (or a loaded model object for the torch backend).
    face: "detect" (find faces), "none" (the image is the face crop), or a fixed region (x, y, w, h)
        / "x,y,w,h" (the face square is cut from it as given).
    backend: "torch" or "onnx" (vrfer.onnx_backend.OnnxClassifier).
    smoothing: ALPHA in [0, 1): exponential moving average of the probabilities across successive
        frames (predict calls on a stream, or `video`); 0 turns it off. `reset()` starts a new stream.
    threads: torch and detector threads (None: library defaults).
    """

    def __init__(self, model=DEFAULT_MODEL, face="detect", backend: str = "torch", smoothing: float = 0.0,
                 threads: int | None = None, tta_flip: bool = False, detector=None):
        if not 0.0 <= float(smoothing) < 1.0:
            raise VrferError(f"smoothing {smoothing}: ALPHA must be in [0, 1) (0: off, 0.8: strong)")
        if isinstance(face, str) and face not in ("detect", "none"):
            face = parse_box(face)
        elif not isinstance(face, str):
            face = tuple(int(v) for v in face)
            if len(face) != 4 or face[2] <= 0 or face[3] <= 0:
                raise VrferError(f"face box {face}: expected (x, y, w, h) with w, h > 0")
        self.face = face
        self.smoothing = float(smoothing)
        self.threads = threads
        if threads:
            import torch
            torch.set_num_threads(int(threads))
        self.classifier = _load_classifier(model, backend, tta_flip, threads)
        self.cfg = self.classifier.cfg
        self.classes = tuple(self.cfg.classes)
        self.backend = backend
        self._detector = detector
        if face == "detect" and detector is None:
            from .faces import get_detector   # now: a missing detector is a setup error, said once
            self._detector = get_detector(threads=threads)
        self._tracker = None
        self._ema: list[tuple[tuple, np.ndarray]] = []

    # -- pieces ----------------------------------------------------------------------------------
    @property
    def detector(self):
        if self._detector is None:
            from .faces import get_detector
            self._detector = get_detector(threads=self.threads)
        return self._detector

    def reset(self) -> None:
        """Forget the previous frames (smoothing state and tracked face): a new stream starts."""
        self._ema = []
        if self._tracker is not None:
            self._tracker.reset()

    def find_faces(self, image: np.ndarray, track: bool = False) -> list[Face]:
        """Faces in a loaded image (uint8 gray or BGR), according to the `face` setting."""
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise VrferError(f"image is {w}x{h} pixels: too small to hold a face")
        if self.face == "none":
            return [Face((0.0, 0.0, float(w), float(h)), 1.0)]
        if not isinstance(self.face, str):
            check_box(self.face, w, h)
            x, y, bw, bh = self.face
            return [Face((float(x), float(y), float(bw), float(bh)), 1.0)]
        if track:
            if self._tracker is None:
                from .faces import FaceTracker
                self._tracker = FaceTracker(self.detector)
            return self._tracker.update(image)
        return self.detector.detect(image)

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """uint8 (N, 48, 48) FER+-framed crops of the faces (full squares: the model takes the lower half)."""
        square = self.face == "detect"
        return np.stack([align_crop(image, f.box, FER_SIZE, square=square) for f in faces])

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) square face crops -> probabilities (N, 8)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.asarray(self.classifier.predict_proba(np.ascontiguousarray(crops)), dtype=np.float64)

    def _smooth(self, boxes: list[tuple], probs: np.ndarray) -> list[np.ndarray | None]:
        if self.smoothing <= 0:
            return [None] * len(boxes)
        a = self.smoothing
        out, new_state, used = [], [], set()
        for b, p in zip(boxes, probs):
            best, best_iou = None, 0.1
            for i, (pb, _) in enumerate(self._ema):
                v = iou(b, pb)
                if i not in used and v > best_iou:
                    best, best_iou = i, v
            if best is None:
                s = p.copy()
            else:
                used.add(best)
                s = a * self._ema[best][1] + (1.0 - a) * p
            out.append(s)
            new_state.append((b, s))
        self._ema = new_state
        return out

    # -- the API ---------------------------------------------------------------------------------
    def predict(self, image, source: str | None = None, frame: int | None = None,
                track: bool = False) -> list[FacePrediction]:
        """Faces and expressions in one image: a path, numpy array (BGR or gray) or PIL image.

        Raises VrferError when the image cannot be read, or when no face is found (face="detect").
        Successive calls are frames of one stream for smoothing; track=True also follows the face
        from the previous call instead of searching the whole image."""
        if source is None:
            source = str(image) if isinstance(image, (str, os.PathLike)) else ""
        img = load_image(image)
        faces = self.find_faces(img, track=track)
        if not faces:
            raise VrferError("no face found" + (" (try --face none for a face crop, or --face x,y,w,h)"
                                                if frame is None else ""))
        probs = self.classify(self.crops(img, faces))
        boxes = [f.int_box() for f in faces]
        smoothed = self._smooth([f.box for f in faces], probs)
        out = []
        for f, b, p, s in zip(faces, boxes, probs, smoothed):
            out.append(FacePrediction(
                source=source, frame=frame, box=b,
                probs={c: float(v) for c, v in zip(self.classes, p)},
                smoothed=None if s is None else {c: float(v) for c, v in zip(self.classes, s)},
                face_score=float(f.score) if self.face == "detect" else None))
        return out

    def video(self, src, max_frames: int | None = None, progress: bool = False,
              name: str | None = None) -> Iterator[tuple[int, list[FacePrediction] | None]]:
        """Frames of a video file or webcam (an int index, or "cam:N") -> (frame index, predictions);
        predictions is None for a frame where no face was found. Tracks the face and smooths."""
        import cv2
        cam = src if isinstance(src, int) else parse_camera(str(src))
        name = name or (f"cam:{cam}" if cam is not None else str(src))
        if cam is None and not Path(src).exists():
            raise VrferError("file not found")
        _quiet_opencv()
        with native_stderr_silenced():
            cap = cv2.VideoCapture(cam if cam is not None else str(src))
        if not cap.isOpened():
            cap.release()
            raise VrferError("cannot open camera" if cam is not None else
                             "cannot open video (not a video file, damaged, or an unsupported codec)")
        self.reset()
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cam is None else 0
        if max_frames:
            total = min(total, max_frames) if total else max_frames
        bar = None
        if progress and cam is None:
            from tqdm import tqdm
            bar = tqdm(total=total or None, desc=Path(name).name, unit="frame", leave=False, disable=None)
        i = 0
        try:
            while max_frames is None or i < max_frames:
                with native_stderr_silenced():
                    ok, frame = cap.read()
                if not ok or frame is None:
                    break
                try:
                    preds = self.predict(frame, source=name, frame=i, track=self.face == "detect")
                except VrferError as e:
                    if "no face" not in str(e):
                        raise
                    preds = None
                yield i, preds
                i += 1
                if bar is not None:
                    bar.update(1)
        finally:
            cap.release()
            if bar is not None:
                bar.close()
        if i == 0:
            raise VrferError("video has no readable frames")

    def annotate(self, image: np.ndarray, preds: list[FacePrediction]) -> np.ndarray:
        """A BGR copy of the image with each face's box and label drawn."""
        return annotate(image, preds)


def _quiet_opencv() -> None:
    """OpenCV prints warnings of its own (e.g. for a camera index that does not exist) on stderr;
    vrfer reports such problems itself, in one line."""
    import cv2
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


def annotate(image: np.ndarray, preds: list[FacePrediction], min_side: int = 256) -> np.ndarray:
    """A BGR copy of the image with each face's box and label drawn; small images (a 48x48 face
    crop) are first scaled up to `min_side` so that the label can be read."""
    import cv2
    out = to_bgr(np.asarray(image)).copy()
    k = 1
    if min(out.shape[:2]) < min_side:
        k = -(-min_side // max(1, min(out.shape[:2])))
        out = cv2.resize(out, (out.shape[1] * k, out.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    h, w = out.shape[:2]
    for p in preds:
        x, y, bw, bh = (v * k for v in p.box)
        t = max(1, round(min(h, w) / 250))
        cv2.rectangle(out, (x, y), (x + bw, y + bh), (40, 220, 40), t)
        text = f"{p.label} {p.score:.2f}"
        scale = max(0.4, min(h, w) / 700)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
        tx = min(max(0, x), max(0, w - tw - 4))
        ty = y - 4 if y - th - 6 >= 0 else min(h - base - 2, y + bh + th + 4)
        cv2.rectangle(out, (tx, ty - th - 3), (tx + tw + 4, ty + base - 1), (40, 220, 40), -1)
        cv2.putText(out, text, (tx + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), t, cv2.LINE_AA)
    return out


def ema(probs: np.ndarray, alpha: float) -> np.ndarray:
    """Reference EMA over a sequence (T, C): s_0 = p_0, s_t = alpha s_{t-1} + (1 - alpha) p_t."""
    probs = np.asarray(probs, dtype=np.float64)
    out = np.empty_like(probs)
    for t, p in enumerate(probs):
        out[t] = p if t == 0 else alpha * out[t - 1] + (1 - alpha) * p
    return out


__all__ = ["DEFAULT_MODEL", "FacePrediction", "Recognizer", "samples_path", "load_image", "expand_inputs",
           "annotate", "ema", "CLASSES"]
