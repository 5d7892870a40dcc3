"""A batch job's folder and its manifest: what makes `vrfer batch` resumable and exactly-once.

DIR/job.json      the options that decide the rows (model fingerprint, backend, face, smoothing, prior, classes,
                  profile); a rerun with other options into the same DIR is refused
DIR/manifest.jsonl one JSON line per finished input, appended and fsync'ed by the client only after the input's
                  files were renamed into place: an input counts as finished when, and only when, its line is here
DIR/.staging/     where workers write (a killed worker leaves a partial file here, never in frames/)
DIR/frames/<key>.parquet, DIR/timelines/<key>.png: renamed in from .staging (os.replace: atomic)

A rerun skips the committed inputs and removes what no manifest line names (staging files, files renamed in
just before a crash): no row is written twice, none is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from ..errors import VrferError


def item_key(path) -> str:
    """A file name for an input, unique within a job: its name made safe, and a hash of its absolute path."""
    p = Path(str(path))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem)[:60] or "input"
    return f"{stem}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:10]}"


class Job:
    def __init__(self, out) -> None:
        self.dir = Path(out)
        self.frames = self.dir / "frames"
        self.timelines = self.dir / "timelines"
        self.staging = self.dir / ".staging"
        self.manifest = self.dir / "manifest.jsonl"

    def open(self, spec: dict) -> None:
        """Make the folders; write job.json, or check a rerun's options against it."""
        from ..outputs import output_dir
        output_dir(self.dir)              # a file, or a folder that cannot be made or written: one line
        for d in (self.frames, self.timelines, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        f = self.dir / "job.json"
        if f.exists():
            old = json.loads(f.read_text())
            diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
            if diff:
                raise VrferError(f"--out {self.dir}: holds a job run with other options ({', '.join(diff)}); "
                                 "rerun it with the same options, or choose another --out")
        else:
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps(spec, indent=1, sort_keys=True))
            os.replace(tmp, f)

    def committed(self) -> dict[str, dict]:
        """key -> the manifest entry of each finished input. A torn last line (a crash while appending) is cut."""
        if not self.manifest.exists():
            return {}
        data = self.manifest.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.manifest, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
            data = data[:data.rfind(b"\n") + 1]
        return {e["key"]: e for e in (json.loads(line) for line in data.decode().splitlines() if line.strip())}

    def clean(self) -> None:
        """Remove every file no manifest line names (staging leftovers, a rename just before a crash)."""
        keep = self.committed()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        for d in (self.frames, self.timelines):
            for f in d.iterdir():
                if f.stem not in keep:
                    f.unlink()

    def commit(self, entry: dict, parquet: Path, timeline: Path | None) -> None:
        """Rename the input's staged files into place, then append its manifest line (fsync'ed): the commit."""
        key = entry["key"]
        if timeline is not None:
            os.replace(timeline, self.timelines / f"{key}.png")
        os.replace(parquet, self.frames / f"{key}.parquet")
        _fsync_dir(self.frames)
        with open(self.manifest, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
