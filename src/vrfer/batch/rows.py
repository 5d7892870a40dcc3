"""The per-frame rows of `vrfer batch` (DIR/frames/*.parquet) and of `Recognizer.video_table(...)`: one row
per face per frame, the values of `vrfer predict --json` (vrfer.results.FacePrediction.to_dict, rounded to
DECIMALS) laid out in columns, as `vrfer predict --csv` names them.

Columns: source, frame (None for a photo), time (s: frame / the video's frame rate; None for a photo), x, y, w, h
(face box), track_id, label, score, the class probabilities (one column per class: neutral, happiness, ...),
smoothed_<class> and smoothed_label (None without smoothing), held, face_score (None when the face was given, not
detected), model_sha256 (vrfer.personal.calibration.model_fingerprint of the weights answering), profile (the calibration
profile in use, None when none: in `vrfer batch` the --profile file as given; in Recognizer.video_table the profile's
person, "" when it names none), reference (how the wearer's face was read, vrfer.personal.reference: "auto", "fixed", or
None for none; "auto" answers as the generic model until the running reference has seen the wearer relaxed).

track_id: which continuous run of the face in a video the row belongs to: 0 until the face is first lost, then
1 when it is found again, and so on (the tracker follows one face: a face lost and found again may be another
person). In a photo, the face's index in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..results import FacePrediction

BASE = ("source", "frame", "time", "x", "y", "w", "h", "track_id", "label", "score")
TAIL = ("smoothed_label", "held", "face_score", "model_sha256", "profile", "reference")


def columns(classes: Sequence[str]) -> list[str]:
    """The row columns, in order, for a model's classes."""
    return [*BASE, *classes, *(f"smoothed_{c}" for c in classes), *TAIL]


def schema(classes: Sequence[str]):
    """The Arrow schema of the rows (every Parquet file of one job has it)."""
    import pyarrow as pa
    types = {"source": pa.string(), "frame": pa.int64(), "time": pa.float64(), "x": pa.int32(), "y": pa.int32(),
             "w": pa.int32(), "h": pa.int32(), "track_id": pa.int32(), "label": pa.string(), "score": pa.float64(),
             "smoothed_label": pa.string(), "held": pa.bool_(), "face_score": pa.float64(),
             "model_sha256": pa.string(), "profile": pa.string(), "reference": pa.string()}
    return pa.schema([(c, types.get(c, pa.float64())) for c in columns(classes)])


def face_rows(preds: Iterable[FacePrediction], classes: Sequence[str], time: float | None = None,
              track_id: int | None = None, model_sha256: str | None = None, profile: str | None = None,
              reference: str | None = None) -> list[dict]:
    """The rows of one frame's (or photo's) faces. track_id None: the face's index (a photo)."""
    out = []
    for i, p in enumerate(preds):
        d = p.to_dict()                    # the rounding of every written output (vrfer.results)
        x, y, w, h = d["box"]
        row = {"source": d["source"], "frame": d["frame"], "time": time, "x": x, "y": y, "w": w, "h": h,
               "track_id": i if track_id is None else track_id, "label": d["label"], "score": d["score"]}
        row.update((c, d["probs"][c]) for c in classes)
        sm = d.get("smoothed")
        row.update((f"smoothed_{c}", None if sm is None else sm[c]) for c in classes)
        row.update(smoothed_label=d.get("smoothed_label"), held=d["held"], face_score=d.get("face_score"),
                   model_sha256=model_sha256, profile=profile, reference=reference)
        out.append(row)
    return out


class VideoRows:
    """Rows of a video's frames, as they come: (frame index, predictions or None) -> rows, with the time and the
    track id (see the module docstring)."""

    def __init__(self, classes: Sequence[str], fps: float | None, model_sha256: str | None = None,
                 profile: str | None = None, reference: str | None = None):
        self.classes, self.fps = list(classes), fps
        self.model_sha256, self.profile, self.reference = model_sha256, profile, reference
        self.rows: list[dict] = []
        self.frames = 0          # frames read
        self.lost = 0            # frames without a face
        self._track, self._seen_before = 0, False
        self._gap = False

    def add(self, frame: int, preds) -> None:
        self.frames += 1
        if not preds:
            self.lost += 1
            self._gap = self._seen_before
            return
        if self._gap:
            self._track += 1
            self._gap = False
        self._seen_before = True
        self.rows += face_rows(preds, self.classes, frame_time(frame, self.fps), self._track, self.model_sha256,
                               self.profile, self.reference)


def frame_time(frame: int, fps: float | None) -> float | None:
    """A frame's time in seconds (None when the frame rate is unknown)."""
    return round(frame / fps, 6) if fps else None


def video_fps(path) -> float | None:
    """The frame rate a video file's header gives (None when it gives none)."""
    import cv2

    from ..errors import native_stderr_silenced
    with native_stderr_silenced():
        cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else None


def table(rows: list[dict], classes: Sequence[str]):
    """The rows as a pandas DataFrame with the columns and types of the Parquet files."""
    import pyarrow as pa
    return pa.Table.from_pylist(rows, schema=schema(classes)).to_pandas()


def reference_column(rec) -> str | None:
    """The `reference` column of a Recognizer's rows: its reference_mode, None for "off"."""
    mode = rec.reference_mode
    return None if mode == "off" else mode


def fingerprint(rec) -> str | None:
    """The model fingerprint of a Recognizer's rows (None where the weights record none: an older exported graph)."""
    from ..errors import VrferError
    try:
        return rec.pipeline.model_sha256()
    except VrferError:
        return None


def video_table(rec, src, max_frames: int | None = None, progress: bool = False, name: str | None = None,
                camera: bool = False):
    """Recognizer.video_table: the rows of `rec.video(...)` as a DataFrame (`table`). camera: src is a webcam (no
    frame rate read from it)."""
    from ..errors import VrferError
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise VrferError(f"video_table needs {e.name}: pip install 'vrfer[batch]' (pyarrow, pandas)") from None
    fps = None if camera else video_fps(src)
    profile = None if rec.profile is None else rec.profile.person
    v = VideoRows(rec.classes, fps, fingerprint(rec), profile, reference_column(rec))
    for i, preds in rec.video(src, max_frames, progress, name):
        v.add(i, preds)
    return table(v.rows, rec.classes)
