"""`vrfer batch`: many videos and photos -> per-frame rows in Parquet, on a local Dask cluster or a running one;
resumable (rerun the same command), exactly-once (vrfer.batch). Exit 1 when any input failed (DIR/failures.csv)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ._options import (
    add_backend_arg,
    add_face_arg,
    add_model_arg,
    add_postprocess_args,
    add_profile_arg,
    add_reference_arg,
    item_error,
    model_source,
)


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="many videos/photos -> Parquet rows, resumable, on one machine or a Dask cluster",
                       description="Every video and photo under INPUT (folders walked as predict walks them) -> "
                                   "DIR/frames/*.parquet (one row per face per frame), DIR/failures.csv. Needs "
                                   "pip install 'vrfer[batch]'. Rerun the same command to finish an interrupted job.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, photos or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="the job's folder (made if missing)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="join a running Dask scheduler (tcp://HOST:8786) instead of starting a local cluster; "
                        "inputs, DIR and the model must be at the same paths on every worker")
    add_model_arg(p, onnx=True)
    add_backend_arg(p)
    add_face_arg(p)
    p.add_argument("--smooth", type=float, default=0.4, metavar="ALPHA",
                   help="smoothing of the probabilities over frames, as vrfer predict's (default 0.4, serve's)")
    add_postprocess_args(p)
    add_profile_arg(p)
    add_reference_arg(p)
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=run)


def run(a) -> int:
    from ..batch import run as batch_run
    from ..batch.engine import check_workers, require
    require()
    if a.address is None:
        check_workers(a.workers)
    model_source(a, a.backend)               # the one reading of --model: a bad one is one line, before any cluster
    report: dict = {}
    batch_run(a.inputs, a.out, a.workers, a.address, a.model, a.backend, a.face, a.smooth, a.prior, a.prior_tau,
              a.classes, a.profile, 1, not a.no_progress, report, reference=a.reference)
    with open(Path(a.out) / "failures.csv", newline="") as fh:     # each named on stderr, as predict names them
        for row in list(csv.reader(fh))[1:]:
            item_error(*row)
    if a.json:
        print(json.dumps(report))
    else:
        print(f"vrfer batch: {report['done']} done, {report['skipped']} already done, {report['failed']} failed, "
              f"{report['frames']} frames in {report['seconds']} s -> {a.out}", file=sys.stderr)
    return 1 if report["failed"] else 0
