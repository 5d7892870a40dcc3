"""`vrfer batch` (issue 32, in progress): per-frame rows of many videos and photos, resumable and exactly-once,
on Dask (docs/SETUP.md says why Dask). Done so far: the row schema (rows.py) and the job folder with its manifest
(job.py). unit.py runs one input on a worker (the model cached per process). Not yet: the
Dask engine, the report and the command."""
