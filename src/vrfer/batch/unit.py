"""One input of a batch job, run on a worker: a video or photo -> its rows in a staged Parquet file, through the
same per-item path as `vrfer predict` (vrfer.commands.predict: video_predictions, photo_predictions). The model
is loaded once per worker process (`recognizer`, cached by the job's options)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from . import rows as R

_RECOGNIZERS: dict[str, object] = {}


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
                                       profile=o.get("profile"))
    return _RECOGNIZERS[key]


def fingerprint(rec) -> str | None:
    """The model fingerprint of the rows (None where the weights record none: an older exported graph)."""
    from ..errors import VrferError
    try:
        return rec.pipeline.model_sha256()
    except VrferError:
        return None


def run_item(item, options: dict, staging: Path) -> dict:
    """Rows of one input (a vrfer.recognizer.Item) written to a new file in `staging`; returns what the client
    commits: key, source, kind, frames, lost, rows, fps and the staged file; {"error": message} for an input that
    cannot be used (nothing is staged then; returned, not raised: Dask's worker logs a raised one with its
    traceback on stderr)."""
    from ..errors import VrferError
    try:
        return _run_item(item, options, staging)
    except VrferError as e:
        return {"error": str(e)}


def _run_item(item, options: dict, staging: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..commands.predict import photo_predictions, video_predictions
    from .job import item_key
    rec = recognizer(options)
    sha, profile = fingerprint(rec), options.get("profile")
    notes: list[str] = []
    if item.kind == "image":
        _, preds = photo_predictions(rec, item)
        rows, frames, lost, fps = R.face_rows(preds, rec.classes, None, None, sha, profile), 1, 0, None
    else:
        fps = R.video_fps(item.path)
        v = R.VideoRows(rec.classes, fps, sha, profile)
        for i, preds in video_predictions(rec, item, note=lambda _name, msg: notes.append(msg)):
            v.add(i, preds)
        rows, frames, lost = v.rows, v.frames, v.lost
    key = item_key(item.path)
    staged = Path(staging) / f"{key}.{uuid.uuid4().hex}.parquet"
    tmp = staged.with_name("_" + staged.name)
    pq.write_table(pa.Table.from_pylist(rows, schema=R.schema(rec.classes)), tmp)
    tmp.rename(staged)
    return {"key": key, "source": item.name, "kind": item.kind, "frames": frames, "lost": lost, "rows": len(rows),
            "fps": fps, "staged": str(staged), "notes": notes}
