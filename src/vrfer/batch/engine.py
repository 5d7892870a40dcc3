"""The Dask side of `vrfer batch`: a local cluster (one single-threaded worker process per core, on 127.0.0.1,
without two Dask defaults that slow this job: WORKER_CONFIG) or
a running one (--address), one task per input, and the client's commit of each finished task (vrfer.batch.job).
A task whose worker died is retried by Dask; its rows count only once the client commits them, so none twice."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from ..errors import VrferError


def require() -> None:
    """One line saying what to install when the batch extra is missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise VrferError(f"vrfer batch needs the batch extra ({e.name} is missing): pip install 'vrfer[batch]' "
                         "(dask, distributed, pyarrow, pandas)") from None


def check_workers(workers: int | None) -> int:
    """The local cluster's worker processes: 1 to two per core (default: one per core); more only wait for each
    other, and 100000 of them never started (was: a 5-minute hang)."""
    cores = os.cpu_count() or 1
    if workers is None:
        return cores
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 2 * cores:
        raise VrferError(f"--workers {workers!r}: expected a whole number, 1 to {2 * cores} (two worker processes per core at most; "
                         f"this machine has {cores} cores)")
    return workers


# Two Dask defaults that cost a worker of this job CPU on every frame (docs/SETUP.md, "Dask or Ray", measured):
# - the nanny sets MALLOC_TRIM_THRESHOLD_=65536 in each worker it spawns (to hand freed memory back to the OS); any
#   such setting turns off glibc's adaptive mmap threshold, so each frame-sized buffer (a 640x480 frame: 900 KiB) is a
#   fresh mmap: about 1,000 page faults and 1-2 ms of system CPU a frame more than in Ray or a plain process;
# - the worker's statistical profiler wakes the event loop every 10 ms to sample the task's stack (for a dashboard
#   the local cluster does not start), taking the GIL from the task 100 times a second.
# The local cluster's workers go without both (the nanny's OMP_NUM_THREADS=1 etc. kept); a MALLOC_TRIM_THRESHOLD_ in
# the environment of `vrfer batch` still wins, as Dask has it. docs/BATCH.md: the same for a cluster's workers.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                 "distributed.worker.profile.enabled": False,
                 # the event loop's health checks and the resource sampling, 50x and 10x less often: a batch
                 # worker's event loop has nothing to do while a video runs (bench_ray_vs_dask: CPU a frame)
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s",
                 "distributed.worker.memory.monitor-interval": "1s"}


def client(workers: int | None = None, address: str | None = None):
    """A dask.distributed Client: of a new local cluster, or of the scheduler at `address`."""
    import logging
    import warnings

    from distributed import Client, LocalCluster
    if address:
        try:
            return Client(address, timeout=30)
        except (OSError, TimeoutError, ValueError) as e:      # ValueError: no port, an unknown protocol
            raise VrferError(f"--address {address}: cannot reach a Dask scheduler there ({e})") from None
    import dask
    n = check_workers(workers)
    # no dashboard; the scheduler's HTTP server on a free port (on its default, 8787, a second cluster on the machine
    # would print a warning); the workers ignore Ctrl-C (vrfer.batch.unit.dask_setup): the client stops them
    with warnings.catch_warnings(), dask.config.set(WORKER_CONFIG):   # 8787 taken is no matter here
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   preload=["vrfer.batch.unit"], silence_logs=logging.ERROR)
        except RuntimeError as e:         # "Nanny failed to start": most often a script without a main guard
            raise VrferError(f"the local Dask cluster did not start ({e}): a script that calls vrfer.batch.run "
                             "must call it under `if __name__ == \"__main__\":` (each worker is a new Python "
                             "process that imports the script)") from None
    return Client(cluster)


def run_job(job, items, bad, options: dict, workers=None, address=None, progress: bool = True) -> dict:
    """Run every input not yet committed; commit each as it finishes; write failures.csv. The report's numbers,
    with the phases: startup_s (the cluster up), work_s (tasks), report_s (summary, timelines, index.html).

    The progress bar (stderr) counts frames live: each worker publishes its video's frame count every
    PROGRESS_EVERY seconds on a topic of this run (vrfer.batch.unit); frames of a task retried elsewhere count once."""
    import uuid

    from distributed import as_completed
    from tqdm import tqdm

    from .job import item_key
    from .report import write_report
    from .unit import run_item
    done = job.committed()
    job.clean()
    todo = [it for it in items if item_key(it.path) not in done]
    failures = list(bad)
    t0 = time.perf_counter()
    c = client(workers, address)
    t_up = time.perf_counter()
    frames = ok = 0
    live: dict[str, int] = {}              # key -> frames its running task has reported
    finished: set[str] = set()             # a late report of a finished task is not counted again

    def on_progress(event) -> None:
        key, n = event[1]["key"], event[1]["frames"]
        if key not in finished:
            live[key] = n

    topic = f"vrfer-batch-{uuid.uuid4().hex}" if progress else None
    bar = tqdm(unit="frame", desc="vrfer batch", disable=None if progress else True, dynamic_ncols=True)
    if not bar.disable:                    # a terminal: the total from the videos' headers (time left)
        bar.total = sum(expected_frames(it) for it in todo) or None
    try:
        if topic:
            c.subscribe_topic(topic, on_progress)
        futures = {c.submit(run_item, it, options, str(job.staging), topic, pure=False): it for it in todo}
        pending = as_completed(futures)
        while not pending.is_empty():
            for fut in pending.next_batch(block=False) if pending.has_ready() else ():
                it = futures.pop(fut)
                finished.add(item_key(it.path))
                live.pop(item_key(it.path), None)
                try:
                    res = fut.result()
                    if "error" in res:        # the input's VrferError, as run_item returns it
                        raise VrferError(res["error"])
                except VrferError as e:
                    failures.append((it.name, str(e)))
                except Exception as e:  # noqa: BLE001 -- one input's problem (or a task failed past Dask's retries) ends no job
                    failures.append((it.name, f"failed: {type(e).__name__}: {e}"))
                else:
                    job.commit({k: v for k, v in res.items() if k != "staged"}, Path(res["staged"]), None)
                    frames += res["frames"]
                    ok += 1
                fut.release()              # done with: a worker lost later must not make Dask run it again
            _show(bar, frames + sum(live.values()), ok, len(failures) - len(bad), len(todo))
            time.sleep(0.2 if progress else 0.05)
    finally:
        bar.close()                        # on Ctrl-C too: the message goes on a line of its own
        c.close()
        if getattr(c, "cluster", None) is not None and not address:
            c.cluster.close()
    t_work = time.perf_counter()
    job.clean()                            # what a killed or interrupted task staged
    with open(job.dir / "failures.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "problem"])
        w.writerows(failures)
    write_report(job, progress)            # summary, episodes, timelines, index.html: of every committed input
    t_end = time.perf_counter()
    seconds = t_end - t0
    return {"out": str(job.dir), "inputs": len(items) + len(bad), "skipped": len(items) - len(todo),
            "done": ok, "failed": len(failures), "frames": frames,
            "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 2) if seconds else None,
            "startup_s": round(t_up - t0, 3), "work_s": round(t_work - t_up, 3), "report_s": round(t_end - t_work, 3)}


def expected_frames(item) -> int:
    """The frames an input will give, as far as known before reading it: its header's count (0: unknown), 1 for
    a photo (the progress bar's total)."""
    if item.kind == "image":
        return 1
    from ..inputs import Video
    try:
        with Video(item.path) as video:
            return video.frame_count
    except VrferError:
        return 0


def _show(bar, frames: int, done: int, failed: int, total: int) -> None:
    if bar.disable:
        return
    text = f"videos {done}/{total}" + (f", {failed} failed" if failed else "")
    if frames > bar.n or text != bar.postfix:
        bar.set_postfix_str(text, refresh=False)
        bar.update(max(frames - bar.n, 0))
        bar.refresh()
