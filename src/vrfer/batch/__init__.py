"""`vrfer batch` (issue 32, in progress): per-frame rows of many videos and photos in Parquet, resumable and
exactly-once, on Dask (docs/SETUP.md says why Dask). rows.py: the row schema; job.py: the job folder and its
manifest; unit.py: one input on a worker (model cached per process); engine.py: the Dask cluster and the commits;
report.py: summary.csv/.parquet, episodes.csv, timelines/*.png and index.html, written at the end of every run.
The progress bar counts frames as the workers read them (unit.py publishes, engine.py shows).

    import vrfer.batch
    out = vrfer.batch.run(["videos/"], "out/", workers=2)     # -> Path("out/")
"""

from __future__ import annotations

from pathlib import Path

from ..pretrained import DEFAULT_MODEL


def run(inputs, out, workers: int | None = None, address: str | None = None, model=DEFAULT_MODEL,
        backend: str = "auto", face: str = "detect", smooth: float | None = 0.4, prior=None, prior_tau=None,
        classes=None, profile=None, threads: int | None = 1, progress: bool = False, report: dict | None = None,
        reference: str | None = None) -> Path:
    """Every video and photo under `inputs` -> rows in out/frames/*.parquet (see vrfer.batch.rows), failures in
    out/failures.csv, the report (vrfer.batch.report: summary, episodes, timelines, index.html); inputs already committed by an earlier run into `out` are skipped. Returns the output folder;
    `report` (a dict) receives the run's numbers. reference: as Recognizer's (None: "auto" where the model has a
    referenced head, as `vrfer predict` does, else none)."""
    from ..recognizer import expand_inputs
    from .engine import require, run_job
    from .job import Job
    require()
    from ..loader import resolve
    from ..reference import default_mode
    source = resolve(model, backend, option="--model")         # a bad model: one line, before any cluster starts
    options = {"model": str(model), "backend": backend, "face": face, "smooth": smooth, "prior": prior,
               "prior_tau": prior_tau, "classes": classes, "profile": None if profile is None else str(profile),
               "threads": threads,
               "reference": reference if reference is not None else default_mode(source.cfg)}
    items, bad = expand_inputs([str(p) for p in inputs])
    job = Job(out)
    job.open({**{k: v for k, v in options.items() if k != "threads"}, "model_sha256": source.fingerprint})
    numbers = run_job(job, [it for it in items if it.kind != "camera"], bad, options, workers, address, progress)
    if report is not None:
        report.update(numbers)
    return job.dir
