"""The Dask side of `vrfer batch`: a local cluster (one single-threaded worker process per core, on 127.0.0.1) or
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
    n = check_workers(workers)
    with warnings.catch_warnings():       # the scheduler's unused HTTP port: 8787 taken is no matter here
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
        except RuntimeError as e:         # "Nanny failed to start": most often a script without a main guard
            raise VrferError(f"the local Dask cluster did not start ({e}): a script that calls vrfer.batch.run "
                             "must call it under `if __name__ == \"__main__\":` (each worker is a new Python "
                             "process that imports the script)") from None
    return Client(cluster)


def run_job(job, items, bad, options: dict, workers=None, address=None, progress: bool = True) -> dict:
    """Run every input not yet committed; commit each as it finishes; write failures.csv. The report's numbers."""
    from distributed import as_completed
    from tqdm import tqdm

    from .report import write_report
    from .unit import run_item
    done = job.committed()
    job.clean()
    from .job import item_key
    todo = [it for it in items if item_key(it.path) not in done]
    failures = list(bad)
    t0 = time.perf_counter()
    c = client(workers, address)
    frames = 0
    try:
        futures = {c.submit(run_item, it, options, str(job.staging), pure=False): it for it in todo}
        bar = tqdm(total=len(todo), unit="video", desc="vrfer batch", disable=None if progress else True)
        for fut in as_completed(futures):
            it = futures[fut]
            try:
                res = fut.result()
                if "error" in res:            # the input's VrferError, as run_item returns it
                    raise VrferError(res["error"])
            except VrferError as e:
                failures.append((it.name, str(e)))
            except Exception as e:  # noqa: BLE001 -- one input's problem (or a task failed past Dask's retries) ends no job
                failures.append((it.name, f"failed: {type(e).__name__}: {e}"))
            else:
                job.commit({k: v for k, v in res.items() if k != "staged"}, Path(res["staged"]), None)
                frames += res["frames"]
            bar.update(1)
            seconds = time.perf_counter() - t0
            bar.set_postfix(frames=frames, fps=f"{frames / max(seconds, 1e-9):.1f}")
        bar.close()
    finally:
        c.close()
        if getattr(c, "cluster", None) is not None and not address:
            c.cluster.close()
    job.clean()
    with open(job.dir / "failures.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "problem"])
        w.writerows(failures)
    write_report(job, progress)            # summary, episodes, timelines, index.html: of every committed input
    seconds = time.perf_counter() - t0
    return {"out": str(job.dir), "inputs": len(items) + len(bad), "skipped": len(items) - len(todo),
            "done": len(todo) - (len(failures) - len(bad)), "failed": len(failures), "frames": frames,
            "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 2) if seconds else None}
