"""`vrfer batch` (issue 32, in progress): per-frame rows of many videos and photos in Parquet, resumable and
exactly-once, on Dask (docs/SETUP.md says why Dask). rows.py: the row schema; job.py: the job folder and its
manifest; unit.py: one input on a worker (model cached per process); engine.py: the Dask cluster and the commits;
report.py: summary.csv/.parquet, episodes.csv, timelines/*.png and index.html, written at the end of every run.
The progress bar counts frames as the workers read them (unit.py publishes, engine.py shows).

    import vrfer.batch
    if __name__ == "__main__":              # the workers are new processes that import this script
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
    from ..inputs import expand_inputs
    from .engine import check_workers, require, run_job
    from .job import Job, item_key
    from .unit import recognizer
    require()
    if address is None:
        check_workers(workers)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]                   # one path, not its characters
    if not isinstance(out, (str, Path)) or str(out) == "":
        from ..errors import VrferError
        raise VrferError(f"out={out!r}: expected the job's folder (a path)")
    from ..inference.loader import resolve
    from ..personal.reference import default_mode
    source = resolve(model, backend, option="--model")         # a bad model: one line, before any cluster starts
    options = {"model": str(model), "backend": backend, "face": face, "smooth": smooth, "prior": prior,
               "prior_tau": prior_tau, "classes": classes, "profile": None if profile is None else str(profile),
               "threads": threads,
               "reference": reference if reference is not None else default_mode(source.cfg)}
    recognizer(options)     # face, smoothing, prior, classes, profile, reference: checked here, once, as each worker reads them
    items, bad = expand_inputs([str(p) for p in inputs])
    job = Job(out)
    own = {job.frames.resolve(), job.timelines.resolve()}     # --out inside an input folder: the job's own
    keys, unique = set(), []                                   # timelines are never inputs; an input named
    for it in items:                                           # twice (a folder and a file in it) runs once
        if it.kind == "camera":
            bad.append((it.name, "a webcam never ends: batch takes video files and photos (predict reads a webcam)"))
            continue
        p = Path(str(it.path)).resolve()
        if own & set(p.parents) or item_key(it.path) in keys:
            continue
        keys.add(item_key(it.path))
        unique.append(it)
    options["model_sha256"] = source.fingerprint     # each worker checks the weights it loads against it
    job.open({k: v for k, v in options.items() if k != "threads"})
    numbers = run_job(job, unique, bad, options, workers, address, progress)
    if report is not None:
        report.update(numbers)
    return job.dir
