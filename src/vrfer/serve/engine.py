"""Inference for the server: one model, one worker thread, off the event loop.

`Predictor` runs vrfer.inference.pipeline (the path every command follows from image to answer) on batches of
frames. `InferenceEngine` owns the worker thread: jobs (encoded image bytes or decoded arrays) wait in a
bounded queue, the worker takes what is waiting (up to a batch), decodes and predicts under one lock,
and completes each job's future. A frame the server cannot use becomes a ProtocolError for that job.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ImageTooLargeError, VrferError
from ..occlusion import apply_input_mode
from ..inference.pipeline import Pipeline
from ..inference.images import load_image
from .protocol import ProtocolError
from ..inference.session import ModelFace

log = logging.getLogger("vrfer.serve")

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
CROP_DISPLAY_WIDTH = 96


class EngineBusy(Exception):
    """The inference queue is full (HTTP 503 / an "error" event with code "busy")."""


# ------------------------------------------------------------------------------------------ decoding

def decode_frame(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG/PNG/WebP/BMP/GIF bytes -> uint8 gray or BGR array, by vrfer.inference.images.load_image (the loader
    every command uses: EXIF orientation, 16-bit, alpha...); the pixel limit is checked before decoding.
    ProtocolError (bad_image / image_too_large) for anything else."""
    try:
        return load_image(data, max_pixels=max_pixels, formats=IMAGE_FORMATS, shrink_jpeg=False)
    except ImageTooLargeError as e:
        raise ProtocolError("image_too_large", str(e)) from None
    except VrferError as e:
        raise ProtocolError("bad_image", str(e)[:300]) from None


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


# ------------------------------------------------------------------------------------------ the predictor

class Predictor:
    """The server's model and face finding: vrfer.inference.pipeline.Pipeline, with every face of a batch of frames
    going through the classifier in one call. Not thread-safe: the engine calls it under a lock.

    Faces come back as the model saw them (vrfer.inference.session.ModelFace); each connection's vrfer.inference.session.Session
    applies the wearer's profile and reference, its prior and class subset, and smoothing."""

    def __init__(self, model: str, face="detect", backend: str = "auto", threads: int | None = None, profile=None):
        # a profile (vrfer.personal.calibration): every connection's session starts with it
        self.pipeline = Pipeline(model, face, backend, threads, profile=profile)
        self.face = self.pipeline.face
        self.backend = backend
        self.cfg = self.pipeline.cfg

    def new_tracker(self):
        """A face tracker for one stream (a WebSocket connection, the camera), or None: with face="detect"
        it follows the main face from frame to frame (vrfer.faces.tracking.FaceTracker, ~15x cheaper than a
        full detection). Use it only from the engine's worker (under its lock)."""
        return self.pipeline.new_tracker()

    def predict(self, image: np.ndarray, want_crop: bool = False, want_rep: bool = False) -> "FrameResult":
        result = self.predict_batch([image], [want_crop], None, [want_rep])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def predict_batch(self, images: list[np.ndarray], want_crops: list[bool], trackers: list | None = None,
                      want_reps: list[bool] | None = None) -> list:
        """-> per image a FrameResult (its faces as the model saw them, vrfer.inference.session.ModelFace, the wearer first:
        vrfer.faces.wearer_first; logits and representations where wanted: a connection with a profile, a
        reference or a calibration), or a ProtocolError for that image. Every face of the batch goes through the
        classifier in one call; nothing of a wearer is applied here (each connection's vrfer.inference.session.Session does)."""
        pipe = self.pipeline
        want_reps = want_reps or [False] * len(images)
        found: list = [None] * len(images)
        crops = []
        for i, (im, tracker) in enumerate(zip(images, trackers or [None] * len(images))):
            try:
                faces = pipe.find_faces(im, tracker)
                found[i] = (faces, pipe.crops(im, faces))
            except VrferError as e:
                found[i] = ProtocolError("bad_image", str(e)[:300])
                continue
            crops.append(found[i][1])
        rep = any(w for w, f in zip(want_reps, found) if not isinstance(f, Exception))
        probs, logits, feats = pipe.model_outputs(np.concatenate(crops) if crops else np.zeros((0, 1, 1), np.uint8),
                                                  rep)
        out, k = [], 0
        for im, f, want_crop, want_rep in zip(images, found, want_crops, want_reps):
            if isinstance(f, Exception):
                out.append(f)
                continue
            faces, c = f
            mine = [ModelFace(face, probs[k + j], logits[k + j] if want_rep else None,
                              feats[k + j] if want_rep else None, c[j]) for j, face in enumerate(faces)]
            k += len(faces)
            view = model_view_png(c[0], self.cfg) if want_crop and len(faces) else None
            out.append(FrameResult(mine, int(im.shape[1]), int(im.shape[0]), view))
        return out

    def info(self) -> dict:
        cfg = self.cfg
        import vrfer
        return {
            "name": cfg.name, "arch": cfg.arch, "classes": list(cfg.classes),
            "input": {"shape": list(cfg.input_shape), "image_size": cfg.image_size, "channels": cfg.in_chans,
                      "input_mode": cfg.input_mode, "occlusion": cfg.occlusion,
                      "mean": list(cfg.mean), "std": list(cfg.std)},
            "version": self.pipeline.source.version, "vrfer_version": vrfer.__version__,
            "trained_on": cfg.trained_on, "description": cfg.description,
            "face": self.face if isinstance(self.face, str) else list(self.face), "backend": self.backend,
            "train_prior": (cfg.extra or {}).get("train_prior"),
        }


# ------------------------------------------------------------------------------------------ the engine

@dataclass
class FrameResult:
    """One frame through the model: its faces as the model saw them (vrfer.inference.session.ModelFace, the wearer first),
    the frame's size, the wearer's crop as the model saw it (a PNG data URL) when asked for, and the batch's time."""

    faces: list
    width: int
    height: int
    crop: str | None = None
    infer_ms: float = 0.0


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
    __slots__ = ("data", "crop", "stream", "rep", "future", "t0")

    def __init__(self, data, crop: bool, stream: Stream | None = None, rep: bool = False):
        self.data, self.crop, self.stream, self.rep = data, crop, stream, rep
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

    def submit(self, data, crop: bool = False, stream: Stream | None = None,
               rep: bool = False) -> concurrent.futures.Future:
        """data: encoded image bytes or a decoded BGR/gray uint8 array; stream: the frames' Stream (its
        face tracker follows the face between frames), None for a lone image; rep: also the model's logits and
        representation of each face (vrfer.personal.calibration, per connection)."""
        n = self._q.qsize()
        if n >= self.max_pending:
            self.stats["busy"] += 1
            raise EngineBusy(f"inference queue full ({n} waiting)")
        job = _Job(data, crop, stream, rep)
        self._q.put(job)
        self.stats["max_queue"] = max(self.stats["max_queue"], n + 1)
        return job.future

    async def infer(self, data, crop: bool = False, stream: Stream | None = None, rep: bool = False) -> FrameResult:
        return await asyncio.wrap_future(self.submit(data, crop, stream, rep))

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
            return decode_frame(bytes(data), self.max_pixels)
        return np.asarray(data)

    def _many(self, jobs: list[_Job], images: list[np.ndarray]) -> list:
        t = time.perf_counter()
        trackers = [self._tracker(j.stream) for j in jobs]
        results = self.predictor.predict_batch(images, [j.crop for j in jobs], trackers, [j.rep for j in jobs])
        ms = (time.perf_counter() - t) * 1000
        self.stats["infer_ms_total"] += ms
        self.stats["batches"] = self.stats.get("batches", 0) + 1
        for r in results:
            if not isinstance(r, Exception):
                r.infer_ms = ms
        return results

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
                except ProtocolError as e:
                    self.stats["errors"] += 1
                    job.future.set_exception(e)
                except Exception as e:  # noqa: BLE001  (a bad frame must not kill the worker)
                    self.stats["errors"] += 1
                    job.future.set_exception(ProtocolError("bad_image", f"cannot decode: {type(e).__name__}"))
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
                        results.append(ProtocolError("bad_image", str(e)[:300]))
                    except Exception as e:  # noqa: BLE001
                        log.exception("inference failed")
                        results.append(ProtocolError("internal", f"inference failed: {type(e).__name__}"))
            for job, result in zip(jobs, results):
                if isinstance(result, Exception):
                    self.stats["errors"] += 1
                    job.future.set_exception(result)
                else:
                    self.stats["jobs"] += 1
                    job.future.set_result(result)
