"""One input of a batch job, run on a worker: a video or photo -> its rows in a staged Parquet file, through the
same per-item path as `vrfer predict` (vrfer.commands.predict: video_predictions, photo_predictions). The model
is loaded once per worker process (`recognizer`, cached by the job's options)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from . import rows as R

_RECOGNIZERS: dict[str, object] = {}
PROGRESS_EVERY = 0.5     # seconds between a worker's progress events


def recognizer(options: dict):
    """The Recognizer of these options (keys: model, backend, face, smooth, prior, prior_tau, classes, profile,
    threads), made once per process."""
    key = json.dumps(options, sort_keys=True)
    if key not in _RECOGNIZERS:
        from ..recognizer import Recognizer
        o = options
        _RECOGNIZERS[key] = Recognizer(model=o["model"], face=o.get("face", "detect"), backend=o.get("backend", "auto"),
                                       alpha=o.get("smooth"), threads=o.get("threads"), prior=o.get("prior"),
                                       prior_tau=o.get("prior_tau"), classes=o.get("classes"),
                                       profile=o.get("profile"), reference=o.get("reference"))
    return _RECOGNIZERS[key]


def dask_setup(worker) -> None:
    """Dask's preload hook, run as each worker of `vrfer batch`'s local cluster starts (vrfer.batch.engine.client):
    Ctrl-C in a terminal reaches every process of the command; the client stops the cluster, so a worker ignores it
    (else each prints a KeyboardInterrupt traceback)."""
    import signal
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:                     # not the main thread: nothing to change
        pass


def run_item(item, options: dict, staging: Path, topic: str | None = None) -> dict:
    """Rows of one input (a vrfer.recognizer.Item) written to a new file in `staging`; returns what the client
    commits: key, source, kind, frames, lost, rows, fps and the staged file; {"error": message} for an input that
    cannot be used (nothing is staged then; returned, not raised: Dask's worker logs a raised one with its
    traceback on stderr). topic: on a Dask worker, publish {"key", "frames"} (frames read so far) on that event
    topic every PROGRESS_EVERY seconds (vrfer.batch.engine's progress bar)."""
    from ..errors import VrferError
    try:
        return _run_item(item, options, staging, topic)
    except VrferError as e:
        return {"error": str(e)}


def _run_item(item, options: dict, staging: Path, topic: str | None = None) -> dict:
    import pyarrow as pa

    from ..errors import VrferError
    import pyarrow.parquet as pq

    from ..commands.predict import photo_predictions, video_predictions
    from .job import item_key
    key = item_key(item.path)
    rec = recognizer(options)
    sha, profile, ref = R.fingerprint(rec), options.get("profile"), R.reference_column(rec)
    want = options.get("model_sha256")
    if want and sha and sha != want:        # on a cluster: another file at the same path on this worker
        raise VrferError(f"this worker's model {options['model']} has other weights ({sha[:12]}) than the job's "
                         f"({want[:12]}): the same model file must be at the same path on every worker")
    notes: list[str] = []
    if item.kind == "image":
        _, preds = photo_predictions(rec, item)
        rows, frames, lost, fps = R.face_rows(preds, rec.classes, None, None, sha, profile, None), 1, 0, None
    else:
        fps = R.video_fps(item.path)
        v = R.VideoRows(rec.classes, fps, sha, profile, ref)
        publish = _publisher(topic, key)
        for i, preds in video_predictions(rec, item, note=lambda _name, msg: notes.append(msg)):
            v.add(i, preds)
            publish(v.frames)
        rows, frames, lost = v.rows, v.frames, v.lost
    staged = Path(staging) / f"{key}.{uuid.uuid4().hex}.parquet"
    tmp = staged.with_name("_" + staged.name)
    pq.write_table(pa.Table.from_pylist(rows, schema=R.schema(rec.classes)), tmp)
    tmp.rename(staged)
    return {"key": key, "source": item.name, "kind": item.kind, "frames": frames, "lost": lost, "rows": len(rows),
            "fps": fps, "staged": str(staged), "notes": notes}


def _publish_nothing(frames: int) -> None:
    pass


def _publisher(topic: str | None, key: str):
    """publish(frames): the frames read so far on `topic`, at most every PROGRESS_EVERY seconds; nothing without a
    topic or outside a Dask worker."""
    if not topic:
        return _publish_nothing
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return _publish_nothing
    last = [time.monotonic()]

    def publish(frames: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            worker.log_event(topic, {"key": key, "frames": frames})
    return publish
