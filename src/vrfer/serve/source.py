"""A camera or video file read by the server itself (`vrfer serve --camera 0` / `--video clip.mp4`).

A reader thread grabs frames with OpenCV and keeps only the newest one; the server's broadcaster task
takes it whenever the model is free, so a slow model skips frames instead of falling behind.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ..errors import native_stderr_silenced, VrferError

log = logging.getLogger("vrfer.serve")


class FrameSource:
    def __init__(self, camera: int | None = None, video: str | None = None, loop: bool = True,
                 max_fps: float = 15.0):
        if (camera is None) == (video is None):
            raise ValueError("give exactly one of camera, video")
        self.camera, self.video, self.loop = camera, video, loop
        self.max_fps = max_fps
        self.name = f"camera:{camera}" if camera is not None else f"video:{video}"
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"read": 0, "skipped": 0, "taken": 0, "ended": False, "error": None}
        self._first: np.ndarray | None = None     # a video's first frame, read by _open
        self._cap = self._open()

    def _open(self):
        try:
            import cv2
        except ImportError:
            raise VrferError("--camera/--video need OpenCV (pip install opencv-python-headless)") from None
        try:  # OpenCV's own "[ WARN ]" lines: vrfer says what went wrong in one line of its own
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
        with native_stderr_silenced():
            cap = cv2.VideoCapture(self.camera if self.camera is not None else str(self.video))
        if not cap.isOpened():
            what = f"camera {self.camera}" if self.camera is not None else f"{self.video}"
            raise VrferError(f"{what}: cannot open the video source")
        if self.video is not None:
            # OpenCV "opens" some files that hold no video (a text file named .jpg, as an image sequence):
            # only a frame read proves it is one. That frame is the first one served.
            with native_stderr_silenced():
                ok, frame = cap.read()
            if not ok or frame is None:
                cap.release()
                raise VrferError(f"{self.video}: no video frame could be read (not a video file, damaged, "
                                 "or an unsupported codec)")
            self._first = frame
        return cap

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vrfer-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(3)
        self._cap.release()

    def _run(self) -> None:
        import cv2
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self.video is not None else 0
        period = 1.0 / min(self.max_fps, fps) if fps and fps > 0 else 1.0 / self.max_fps
        next_t = time.monotonic()
        while not self._stop.is_set():
            ok, frame = (True, self._first) if self._first is not None else self._cap.read()
            self._first = None
            if not ok:
                if self.video is not None and self.loop:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = self._cap.read()
                if not ok:
                    self.stats["ended"] = True
                    log.info("%s: no more frames", self.name)
                    with self._cond:
                        self._cond.notify_all()
                    return
            with self._cond:
                if self._frame is not None:
                    self.stats["skipped"] += 1
                self._frame = frame
                self._seq += 1
                self.stats["read"] += 1
                self._cond.notify_all()
            if self.video is not None:  # play a file at its own speed (capped), not as fast as it decodes
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_t = time.monotonic()

    def take(self, timeout: float = 0.5):
        """-> (seq, newest frame) or None when nothing new arrived within timeout (blocking; use a thread)."""
        with self._cond:
            if self._frame is None and not self._stop.is_set() and not self.stats["ended"]:
                self._cond.wait(timeout)
            if self._frame is None:
                return None
            frame, self._frame = self._frame, None
            self.stats["taken"] += 1
            return self._seq, frame

    @property
    def ended(self) -> bool:
        return bool(self.stats["ended"])
