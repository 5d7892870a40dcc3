"""What vrfer runs on: photos, video files, webcams and folders of them. The one folder walker (`media_files`),
the one reading of a path list (`expand_inputs`: predict, batch), the one rule for what is a video (`is_video`),
and a video's frames (`video_frames`), each with one clear message for what cannot be used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import VrferError, native_stderr_silenced
from .inference.images import _file_kind

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm",
              ".jfif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
              ".ts", ".mts"}


def samples_path() -> Path:
    """The folder of sample images bundled with vrfer (`vrfer predict --samples` runs on it)."""
    return Path(str(resources.files("vrfer").joinpath("samples")))


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


def is_video(path) -> bool:
    """A video file by its extension (VIDEO_EXTS): the one rule of predict, batch, calibrate, adapt and serve."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def media_files(folder) -> list[Path]:
    """The image and video files under a folder, walked recursively in name order; hidden files and folders
    (names starting with ".") and other files are skipped. The one folder walker of predict, batch, calibrate and
    adapt."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            ext = os.path.splitext(f)[1].lower()
            if not f.startswith(".") and (ext in IMAGE_EXTS or ext in VIDEO_EXTS):
                found.append(Path(root) / f)
    return found


def media_of(path, name: str | None = None) -> list[Path]:
    """A folder's image and video files (media_files), or the file itself; VrferError, naming `name` (default: the
    path), for a path that does not exist or a folder without any (calibrate's CLASS=PATH, adapt --unlabelled)."""
    name = str(path) if name is None else name
    path = Path(path)
    if not path.exists():
        raise VrferError(f"{name}: file not found")
    files = media_files(path) if path.is_dir() else [path]
    if not files:
        raise VrferError(f"{name}: a folder without images or videos")
    return files


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
        if str(p) == "":            # Path("") is the working folder: an unset shell variable must not walk it
            bad.append((repr(p), "empty path"))
            continue
        path = Path(p)
        try:
            os.stat(str(p))         # the text as given: Path drops a trailing slash, and "face.png/" is no folder
            path.stat()
        except OSError as e:        # a name too long, a symlink loop, a path through a file: said, not raised
            bad.append((str(p), "not a folder (a file named with a trailing /)" if isinstance(e, NotADirectoryError)
                        and path.is_file() else "file not found" if isinstance(e, (FileNotFoundError,
                                                                                    NotADirectoryError))
                        else f"cannot read it ({e.strerror or e})"))
            continue
        if path.is_dir():
            found = [Item("video" if is_video(fp) else "image", str(fp), str(fp), str(fp.relative_to(path)))
                     for fp in media_files(path)]
            if not found:
                bad.append((str(p), "no image or video files in this folder"))
            items.extend(found)
        else:
            kind = "video" if is_video(path) else "image"
            items.append(Item(kind, str(p), str(p), path.name))
    return items, bad


def check_video_file(path) -> None:
    """A video file exists and is a regular file: a pipe or device is refused at once (reading one may never end)."""
    import stat
    if not Path(path).exists():
        raise VrferError("file not found")
    if not stat.S_ISREG(Path(path).stat().st_mode):
        raise VrferError(f"not a regular file ({_file_kind(Path(path))}); a video is a file")


class Video:
    """One video file or webcam (an int index, or "cam:N"), opened once: what its header says (`frame_count`, 0
    when unknown or a camera; `size`, (width, height) or None) and its frames (`frames`). VrferError for a missing
    file, a pipe or device (refused at once: reading one may never end), or one OpenCV cannot open."""

    def __init__(self, src):
        import cv2
        self.camera = src if isinstance(src, int) else parse_camera(str(src))
        self.name = f"cam:{self.camera}" if self.camera is not None else str(src)
        if self.camera is None:
            check_video_file(src)
        _quiet_opencv()
        with native_stderr_silenced():
            self._cap = cv2.VideoCapture(self.camera if self.camera is not None else str(src))
        if not self._cap.isOpened():
            self.close()
            raise VrferError("cannot open camera" if self.camera is not None else
                             "cannot open video (not a video file, damaged, or an unsupported codec)")
        cap = self._cap
        self.frame_count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0) if self.camera is None else 0
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.size = size if min(size) > 0 else None

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self, max_frames: int | None = None, progress_name: str | None = None,
               whole: bool = False) -> Iterator[np.ndarray]:
        """The BGR frames, at most max_frames; the video is closed after the last. VrferError when it has no
        readable frame. progress_name: show a progress bar (files only) under that name. whole: a file that ends
        before the frames its header announces (up to max_frames) is an error after the last frame read."""
        total = self.frame_count
        if max_frames:
            total = min(total, max_frames) if total else max_frames
        bar = None
        if progress_name and self.camera is None:
            from tqdm import tqdm
            bar = tqdm(total=total or None, desc=Path(progress_name).name, unit="frame", leave=False, disable=None)
        i = 0
        try:
            while max_frames is None or i < max_frames:
                with native_stderr_silenced():
                    ok, frame = self._cap.read()
                if not ok or frame is None:
                    break
                yield frame
                i += 1
                if bar is not None:
                    bar.update(1)
        finally:
            self.close()
            if bar is not None:
                bar.close()
        if i == 0:
            raise VrferError("video has no readable frames")
        header = self.frame_count
        if whole and header > i and (not max_frames or i < max_frames):
            raise VrferError(f"video ended after {i} of the {header} frames its header announces (truncated or "
                             "damaged file)")


def video_frames(src, max_frames: int | None = None, progress_name: str | None = None,
                 whole: bool = False) -> Iterator[np.ndarray]:
    """The BGR frames of a video file or webcam (a path, an int index, "cam:N", or a Video opened already), at
    most max_frames (Video.frames: progress_name, whole). VrferError as Video and Video.frames give it."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise VrferError(f"max_frames {max_frames!r}: expected a whole number >= 1 (None: every frame)")
    video = src if isinstance(src, Video) else Video(src)
    yield from video.frames(max_frames, progress_name, whole)


def _quiet_opencv() -> None:
    """OpenCV prints warnings of its own (e.g. for a camera index that does not exist) on stderr;
    vrfer reports such problems itself, in one line."""
    import cv2
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
