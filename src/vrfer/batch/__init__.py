"""`vrfer batch` (issue 32, in progress): per-frame rows of many videos and photos, resumable and exactly-once,
on Dask (docs/SETUP.md says why Dask). Done so far: the row schema (rows.py) and the job folder with its manifest
(job.py). Not yet: the worker unit, the Dask engine, the report and the command."""
