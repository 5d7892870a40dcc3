"""Inference for the server: one model, one worker thread, off the event loop.

`Predictor` is the server's only view of vrfer.recognizer.Recognizer; everything that depends on the
recognizer's interface lives in `_make_recognizer` and `_recognize` below. `InferenceEngine` owns the
worker thread: jobs (encoded image bytes or decoded arrays) wait in a bounded queue, the worker takes
what is waiting (up to a batch), decodes and predicts under one lock, and completes each job's future.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import io
import logging
import queue
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..classes import CLASSES
from ..errors import VrferError
from ..faces import box_crop
from ..occlusion import apply_input_mode

log = logging.getLogger("vrfer.serve")

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
CROP_DISPLAY_WIDTH = 96


class FrameError(Exception):
    """A frame the server cannot use (too big, not an image...): an "error" event, never a crash."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class EngineBusy(Exception):
    """The inference queue is full (HTTP 503 / an "error" event with code "busy")."""


# ------------------------------------------------------------------------------------------ decoding

try:
    import cv2 as _cv2
except ImportError:  # pragma: no cover  (OpenCV is optional: PIL and numpy do the same, slower)
    _cv2 = None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG/PNG/WebP/BMP/GIF bytes -> uint8 BGR (H, W, 3) array (EXIF orientation applied).

    PIL reads the header (format and size: the pixel limit is checked before any decoding); OpenCV
    decodes when it can (3x faster than PIL here), PIL otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if not data:
        raise FrameError("bad_image", "empty frame")
    try:
        with warnings.catch_warnings():  # the size is checked below; PIL's warning would only be log noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        with im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise FrameError("bad_image", "image has no pixels")
            if w * h > max_pixels:
                raise FrameError("image_too_large", f"image is {w}x{h} pixels; the limit is {max_pixels} pixels")
            if _cv2 is not None and im.format in ("JPEG", "PNG"):
                bgr = _cv2.imdecode(np.frombuffer(data, np.uint8), _cv2.IMREAD_COLOR)   # applies EXIF too
                if bgr is not None and bgr.ndim == 3:
                    return bgr
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except FrameError:
        raise
    except UnidentifiedImageError:
        raise FrameError("bad_image", f"not an image ({', '.join(IMAGE_FORMATS)} expected)") from None
    except Image.DecompressionBombError as e:
        raise FrameError("image_too_large", str(e)) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise FrameError("bad_image", f"cannot decode the image ({str(e)[:200]})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if _cv2 is not None and image.dtype == np.uint8 and image.shape[2] == 3:
        return _cv2.cvtColor(image, _cv2.COLOR_BGR2GRAY)
    b, g, r = (image[..., i].astype(np.uint16) for i in range(3))
    return ((29 * b + 150 * g + 77 * r + 128) >> 8).astype(np.uint8)


def model_view_png(square: np.ndarray, cfg) -> str:
    """A square grayscale face crop -> what the model sees of it (the rows below the headset for
    visible-half models, the upper part black for upper-occluded ones), as a small PNG data URL."""
    from PIL import Image
    size = int(cfg.image_size) if cfg is not None else 48
    im = Image.fromarray(np.ascontiguousarray(square, dtype=np.uint8))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    a = apply_input_mode(np.asarray(im), getattr(cfg, "input_mode", "full"), getattr(cfg, "occlusion", 0.5))
    scale = max(1, CROP_DISPLAY_WIDTH // size)
    out = Image.fromarray(a)
    if scale > 1:
        out = out.resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------ the adapter

def _model_config(model):
    from ..models.registry import get_config, read_config
    p = Path(str(model))
    if p.suffix == ".safetensors" and p.is_file():
        return read_config(p)
    if p.is_dir() and (p / "best.safetensors").is_file():
        return read_config(p / "best.safetensors")
    return get_config(str(model))


def _make_recognizer(model, face, backend):
    """-> (recognizer, ModelConfig). The one place that constructs vrfer.recognizer.Recognizer."""
    try:
        from ..recognizer import Recognizer
    except ImportError as e:
        if face == "detect":
            raise VrferError(f"--face detect needs vrfer.recognizer, which cannot be loaded ({e})") from None
        log.warning("vrfer.recognizer unavailable (%s); using the server's built-in crop+classify path", e)
        rec = _BasicRecognizer(model, face, backend)
        return rec, rec.cfg
    rec = Recognizer(model=model, face=face, backend=backend, smoothing=0.0)
    cfg = None
    for path in ("cfg", "config", "classifier.cfg", "model.cfg", "clf.cfg"):
        obj = rec
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "image_size"):
            cfg = obj
            break
    if cfg is None:
        cfg = _model_config(model)
    return rec, cfg


def _recognize(rec, cfg, images: list[np.ndarray], trackers: list | None = None) -> list:
    """The one place that calls the recognizer: BGR/gray uint8 images -> for each image either a list of
    faces {box, label, probs (np, class order), crop (uint8 square the classifier got, or None)}, largest
    first, or a FrameError for that image.

    With vrfer.recognizer.Recognizer's pieces (find_faces -> crops -> classify) every face of the batch
    goes through the classifier in one call, and a stream's tracker (new_tracker) finds its face in one
    cheap region-of-interest pass; any other recognizer needs only `predict(image)` returning
    objects with `.to_dict()` (box, probs) — "no face found" then means an empty list, not an error."""
    classes = tuple(getattr(cfg, "classes", CLASSES))
    out: list = [None] * len(images)
    if all(hasattr(rec, m) for m in ("find_faces", "crops", "classify")):
        found, crops, owners = {}, [], []
        trackers = trackers or [None] * len(images)
        for i, (im, tracker) in enumerate(zip(images, trackers)):
            try:
                if tracker is not None and min(im.shape[:2]) >= 8:
                    faces = list(tracker.update(im))
                else:
                    faces = list(rec.find_faces(im))
                if faces:
                    c = np.asarray(rec.crops(im, faces))
                    crops.append(c)
                    owners += [(i, j) for j in range(len(c))]
                found[i] = faces
            except VrferError as e:
                out[i] = FrameError("bad_image", str(e)[:300])
        probs = np.asarray(rec.classify(np.concatenate(crops))) if crops else np.zeros((0, len(classes)))
        allcrops = np.concatenate(crops) if crops else None
        for i, faces in found.items():
            out[i] = [None] * len(faces)
        for k, (i, j) in enumerate(owners):
            p = probs[k].astype(np.float64)
            box = [int(round(float(v))) for v in found[i][j].box]
            out[i][j] = {"box": box, "label": classes[int(np.argmax(p))], "probs": p, "crop": allcrops[k]}
    else:
        for i, im in enumerate(images):
            try:
                preds = rec.predict(im)
            except VrferError as e:
                out[i] = [] if str(e).lower().startswith("no face") else FrameError("bad_image", str(e)[:300])
                continue
            faces = []
            for fp in preds:
                d = fp.to_dict() if hasattr(fp, "to_dict") else dict(fp)
                p = d.get("probs")
                p = (np.array([float(p[c]) for c in classes]) if isinstance(p, dict)
                     else np.asarray(p, np.float64).reshape(-1))
                box = [int(round(float(v))) for v in d.get("box") or (0, 0, im.shape[1], im.shape[0])]
                faces.append({"box": box, "label": classes[int(np.argmax(p))], "probs": p,
                              "crop": getattr(fp, "crop", None)})
            out[i] = faces
    for faces in out:
        if isinstance(faces, list):
            faces.sort(key=lambda f: -f["box"][2] * f["box"][3])
    return out


class _BasicRecognizer:
    """Stand-in used only while vrfer.recognizer is missing: the image (face="none": its centre square)
    or a fixed box is the face."""

    def __init__(self, model, face, backend):
        if backend == "onnx":
            from ..onnx_backend import OnnxClassifier
            self.clf = OnnxClassifier(model)
        else:
            from ..inference import TorchClassifier
            from ..models import create_model
            self.clf = TorchClassifier(create_model(str(model)))
        self.cfg = self.clf.cfg
        self.face = face

    def find_faces(self, image):
        from types import SimpleNamespace
        gray = _gray(np.asarray(image))
        H, W = gray.shape
        if self.face == "none":
            s = min(H, W)
            return [SimpleNamespace(box=((W - s) // 2, (H - s) // 2, s, s))]
        return [SimpleNamespace(box=tuple(self.face))]

    def crops(self, image, faces):
        from PIL import Image
        size = self.cfg.image_size
        gray = _gray(np.asarray(image))
        out = []
        for f in faces:
            c = box_crop(gray, f.box)
            if c.shape[0] != size:
                c = np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR))
            out.append(c)
        return np.stack(out)

    def classify(self, crops):
        return self.clf.predict_proba(crops)


class Predictor:
    """Model + face finding, as the server uses them. Not thread-safe: the engine calls it under a lock."""

    def __init__(self, model: str, face="detect", backend: str = "torch"):
        self.model_arg = str(model)
        self.face = face
        self.backend = backend
        self.rec, self.cfg = _make_recognizer(model, face, backend)

    def predict(self, image: np.ndarray, want_crop: bool = False) -> list[dict]:
        faces = self.predict_batch([image], [want_crop])[0]
        if isinstance(faces, Exception):
            raise faces
        return faces

    def new_tracker(self):
        """A face tracker for one stream (a WebSocket connection, the camera), or None: with face="detect"
        it follows the main face from frame to frame (vrfer.faces.FaceTracker, ~15x cheaper than a
        full detection). Use it only from the engine's worker (under its lock)."""
        if self.face != "detect" or not hasattr(self.rec, "detector"):
            return None
        try:
            from ..faces import FaceTracker
            return FaceTracker(self.rec.detector)
        except Exception as e:  # noqa: BLE001  (no tracker: full detection on every frame)
            log.warning("no face tracker (%s): detecting faces in every frame", e)
            return None

    def predict_batch(self, images: list[np.ndarray], want_crops: list[bool], trackers: list | None = None) -> list:
        """-> per image a list of faces, or a FrameError for that image."""
        results = _recognize(self.rec, self.cfg, images, trackers)
        for image, faces, want in zip(images, results, want_crops):
            if isinstance(faces, Exception):
                continue
            for f in faces:
                crop = f.pop("crop", None)
                if want and f is faces[0]:
                    if crop is None or np.asarray(crop).ndim != 2:
                        crop = box_crop(_gray(image), f["box"])
                    f["crop"] = model_view_png(np.asarray(crop), self.cfg)
        return results

    def info(self) -> dict:
        cfg = self.cfg
        import vrfer
        version = None
        for p in (Path(self.model_arg), Path(self.model_arg) / "best.safetensors"):
            if p.is_file():
                version = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                break
        if version is None and getattr(cfg, "weights", ""):
            from ..models.registry import _pretrained_path
            wp = _pretrained_path(cfg.weights)
            if wp.is_file():
                version = hashlib.sha256(wp.read_bytes()).hexdigest()[:12]
        return {
            "name": cfg.name, "arch": cfg.arch, "classes": list(cfg.classes),
            "input": {"shape": list(cfg.input_shape), "image_size": cfg.image_size, "channels": cfg.in_chans,
                      "input_mode": cfg.input_mode, "occlusion": cfg.occlusion,
                      "mean": list(cfg.mean), "std": list(cfg.std)},
            "version": version or "untrained", "vrfer_version": vrfer.__version__,
            "trained_on": cfg.trained_on, "description": cfg.description,
            "face": self.face if isinstance(self.face, str) else list(self.face), "backend": self.backend,
        }


# ------------------------------------------------------------------------------------------ the engine

class Stream:
    """One stream of frames (a WebSocket connection, the camera): its face tracker, made and used only
    on the worker thread. track=False: find faces from scratch in every frame."""

    def __init__(self, track: bool = True):
        self.track = track
        self.tracker = None
        self.made = False
        self.reset_requested = False

    def reset(self) -> None:
        self.reset_requested = True


class _Job:
    __slots__ = ("data", "crop", "stream", "future", "t0")

    def __init__(self, data, crop: bool, stream: Stream | None = None):
        self.data, self.crop, self.stream = data, crop, stream
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.t0 = time.perf_counter()


class InferenceEngine:
    """One worker thread runs every decode + prediction, so the event loop only moves bytes.

    submit() never blocks: beyond `max_pending` waiting jobs it raises EngineBusy. Each WebSocket
    connection has at most one job here at a time (its newest frame), so the queue stays short.
    """

    def __init__(self, predictor: Predictor, max_pending: int = 64, max_batch: int = 8,
                 max_pixels: int = 4096 * 4096):
        self.predictor = predictor
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.max_pixels = max_pixels
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stats = {"jobs": 0, "errors": 0, "busy": 0, "max_queue": 0, "batches": 0, "infer_ms_total": 0.0}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vrfer-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def queue_size(self) -> int:
        return self._q.qsize()

    def submit(self, data, crop: bool = False, stream: Stream | None = None) -> concurrent.futures.Future:
        """data: encoded image bytes or a decoded BGR/gray uint8 array; stream: the frames' Stream (its
        face tracker follows the face between frames), None for a lone image."""
        n = self._q.qsize()
        if n >= self.max_pending:
            self.stats["busy"] += 1
            raise EngineBusy(f"inference queue full ({n} waiting)")
        job = _Job(data, crop, stream)
        self._q.put(job)
        self.stats["max_queue"] = max(self.stats["max_queue"], n + 1)
        return job.future

    async def infer(self, data, crop: bool = False, stream: Stream | None = None) -> dict:
        return await asyncio.wrap_future(self.submit(data, crop, stream))

    def _tracker(self, stream: Stream | None):
        if stream is None or not stream.track:
            return None
        if not stream.made:
            stream.tracker, stream.made = self.predictor.new_tracker(), True
        if stream.reset_requested:
            stream.reset_requested = False
            if stream.tracker is not None:
                stream.tracker.reset()
        return stream.tracker

    def _decode(self, job: _Job):
        data = job.data
        if isinstance(data, (bytes, bytearray, memoryview)):
            return decode_image(bytes(data), self.max_pixels)
        return np.asarray(data)

    def _many(self, jobs: list[_Job], images: list[np.ndarray]) -> list[dict]:
        t = time.perf_counter()
        trackers = [self._tracker(j.stream) for j in jobs]
        results = self.predictor.predict_batch(images, [j.crop for j in jobs], trackers)
        ms = (time.perf_counter() - t) * 1000
        self.stats["infer_ms_total"] += ms
        self.stats["batches"] = self.stats.get("batches", 0) + 1
        return [faces if isinstance(faces, Exception) else
                {"faces": faces, "width": int(im.shape[1]), "height": int(im.shape[0]), "infer_ms": ms}
                for faces, im in zip(results, images)]

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                batch.append(nxt)
            jobs, images = [], []
            for job in batch:
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    images.append(self._decode(job))
                    jobs.append(job)
                except FrameError as e:
                    self.stats["errors"] += 1
                    job.future.set_exception(e)
                except Exception as e:  # noqa: BLE001  (a bad frame must not kill the worker)
                    self.stats["errors"] += 1
                    job.future.set_exception(FrameError("bad_image", f"cannot decode: {type(e).__name__}"))
            if not jobs:
                continue
            try:
                with self._lock:
                    results = self._many(jobs, images)
            except Exception:  # noqa: BLE001  one image broke the batch: run them one by one
                results = []
                for job, image in zip(jobs, images):
                    try:
                        with self._lock:
                            results.append(self._many([job], [image])[0])
                    except VrferError as e:
                        results.append(FrameError("bad_image", str(e)[:300]))
                    except Exception as e:  # noqa: BLE001
                        log.exception("inference failed")
                        results.append(FrameError("internal", f"inference failed: {type(e).__name__}"))
            for job, result in zip(jobs, results):
                if isinstance(result, Exception):
                    self.stats["errors"] += 1
                    job.future.set_exception(result)
                else:
                    self.stats["jobs"] += 1
                    job.future.set_result(result)
