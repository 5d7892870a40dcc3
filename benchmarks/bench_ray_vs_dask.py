"""Dask against Ray for the job shape of `vrfer batch` (issue 32): start-up, memory, frames/s, install size.

    python benchmarks/bench_ray_vs_dask.py                          # 4 videos x 45 frames, 3 starts each: ~4 min
    python benchmarks/bench_ray_vs_dask.py --videos 2 --frames 30 --starts 1     # a quick look

Ray is not a dependency of vrfer: install it beside vrfer's batch extra to run this (`pip install ray`); without
it the Ray rows say so and the Dask rows are still measured.

The job: one task per video (synthetic, from the bundled sample photos: benchmarks/bench_batch.make_videos), each
task vrfer.batch.unit.run_item (what `vrfer batch` runs on a worker: the default model loaded once per worker
process, vrfer's Recognizer over every frame through commands.predict.video_predictions, rows staged in Parquet),
on a local cluster of 2 worker processes with 1 thread each (--threads 1):

    Dask  vrfer.batch.engine.client(2): LocalCluster, 2 single-threaded worker processes (as `vrfer batch` starts it)
    Ray   ray.init(num_cpus=2, include_dashboard=False), run_item as a remote function with num_cpus=1

Each engine is started --starts times, each time in a new Python process (the driver; imports timed apart), in
turn Dask, Ray, Dask, Ray, ... so that load from other jobs falls on both. In each driver: start-up = ray.init or
LocalCluster until 2 distinct worker processes have each run a no-op task; then 2 s idle; then the job (every
video, one task each, models loaded cold in the workers: what one `vrfer batch` run sees). A thread in the driver
samples every 0.1 s the RSS of the driver and all its descendant processes (psutil; summed, so pages shared between
processes count once per process) and the number of processes: idle = the largest sum in the idle 2 s, job = the
largest during the job. frames/s = frames of all videos / seconds of the job (submit to last result).

Install size: the files (importlib.metadata RECORD) of the engine's distributions and of every distribution they
need that vrfer itself (its core dependencies, pyarrow and pandas: the job's rows) does not.

CPU (lscpu model name), CPUs, the affinity of this process and the load average before and after are printed:
other jobs on the machine depress every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import make_videos

ENGINES = ("dask", "ray")
IDLE_S = 2.0


# ---------------------------------------------------------------------------------------------- in the driver process
class TreeSampler:
    """Peak summed RSS (MiB) and process count of this process and its descendants, sampled every 0.1 s."""

    def __init__(self) -> None:
        import psutil
        self.me = psutil.Process()
        self.peak, self.nproc, self._stop = 0.0, 0, threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def sample(self) -> tuple[float, int]:
        import psutil
        total, n = 0, 0
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
                n += 1
            except psutil.Error:
                pass
        return total / 2**20, n

    def _loop(self) -> None:
        while not self._stop.is_set():
            mib, n = self.sample()
            if mib > self.peak:
                self.peak, self.nproc = mib, n
            time.sleep(0.1)

    def listing(self) -> tuple[list[list], int]:
        """[name, RSS MiB] of each process of the tree; and how many processes of the engine (a command line
        naming Ray's, started after this process) are outside it (a daemon would escape the sum)."""
        import psutil
        tree = [self.me, *self.me.children(recursive=True)]
        names = []
        for p in tree:
            try:
                names.append([_label(p, p.pid == self.me.pid), round(p.memory_info().rss / 2**20)])
            except psutil.Error:
                pass
        pids, born, outside = {p.pid for p in tree}, self.me.create_time(), 0
        for p in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["pid"] not in pids and (p.info["create_time"] or 0) >= born and re.search(r"ray/|ray::|raylet|gcs_server", cmd):
                outside += 1
        return names, outside

    def reset(self) -> None:
        self.peak, self.nproc = 0.0, 0

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def _label(p, driver: bool) -> str:
    """A short name for a process of the tree."""
    if driver:
        return "driver"
    name, args = p.name(), p.cmdline()
    if not name.startswith("python"):
        return name
    if "--multiprocessing-fork" in args:
        return "worker (multiprocessing)"
    if "-c" in args:
        return "python -c " + args[args.index("-c") + 1].split(";")[0][-30:]
    script = next((a for a in args[1:] if a.endswith(".py")), None)
    return Path(script).name if script else name


def _noop_pid(_k: int) -> int:
    time.sleep(0.05)                      # long enough that the 2 tasks overlap: 2 worker processes
    return os.getpid()


def _options() -> dict:
    from vrfer.batch import DEFAULT_MODEL
    return {"model": str(DEFAULT_MODEL), "backend": "auto", "face": "detect", "smooth": 0.4, "prior": None,
            "prior_tau": None, "classes": None, "profile": None, "threads": 1}


def drive(engine: str, videos: list[str], frames: int) -> dict:
    """One start of `engine` in this process: the figures of the module docstring, as a dict."""
    t0 = time.perf_counter()
    from vrfer.batch.unit import run_item
    from vrfer.inputs import Item
    if engine == "ray":
        import ray
    else:
        import distributed  # noqa: F401  (vrfer.batch.engine imports it inside client(): timed here, not there)

        from vrfer.batch.engine import client
    imported = time.perf_counter() - t0
    sampler = TreeSampler()
    staging = tempfile.mkdtemp(prefix=f"bench_{engine}_")
    items = [Item("video", v, v) for v in videos]
    options = _options()
    t = time.perf_counter()
    if engine == "ray":
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        noop, task = ray.remote(num_cpus=1)(_noop_pid), ray.remote(num_cpus=1)(run_item)
        pids = set()
        while len(pids) < 2:
            pids |= set(ray.get([noop.remote(k) for k in range(2)]))
        startup = time.perf_counter() - t
        time.sleep(IDLE_S)
        idle, idle_n = sampler.peak, sampler.nproc
        listing = sampler.listing()
        sampler.reset()
        t = time.perf_counter()
        out = ray.get([task.remote(it, options, staging) for it in items])
        work = time.perf_counter() - t
        job, job_n = sampler.peak, sampler.nproc
        ray.shutdown()
    else:
        c = client(2)
        c.wait_for_workers(2)
        pids = set()
        while len(pids) < 2:
            pids |= set(c.gather([c.submit(_noop_pid, k, pure=False) for k in range(2)]))
        startup = time.perf_counter() - t
        time.sleep(IDLE_S)
        idle, idle_n = sampler.peak, sampler.nproc
        listing = sampler.listing()
        sampler.reset()
        t = time.perf_counter()
        out = c.gather([c.submit(run_item, it, options, staging, pure=False) for it in items])
        work = time.perf_counter() - t
        job, job_n = sampler.peak, sampler.nproc
        c.close()
        c.cluster.close()
    sampler.stop()
    shutil.rmtree(staging, ignore_errors=True)
    bad = [o for o in out if "error" in o or o.get("frames") != frames]
    if bad:
        sys.exit(f"bench_ray_vs_dask: {engine}: a task failed or read too few frames: {bad[0]}")
    return {"import_s": imported, "startup_s": startup, "idle_mib": idle, "idle_procs": idle_n, "job_mib": job,
            "job_procs": job_n, "listing": listing, "work_s": work, "fps": len(videos) * frames / work}


# ---------------------------------------------------------------------------------------------- in the parent process
def _req_name(req: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def closure(names: list[str]) -> set[str]:
    """The installed distributions `names` need (themselves included; extras not taken)."""
    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        try:
            d = metadata.distribution(n)
        except metadata.PackageNotFoundError:
            continue
        seen.add(n)
        todo += [_req_name(r) for r in (d.requires or []) if "extra ==" not in r]
    return seen


def size_mib(dists: set[str]) -> float:
    total = 0
    for n in dists:
        d = metadata.distribution(n)
        for f in d.files or []:
            p = Path(d.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
    return total / 2**20


def install_sizes() -> dict[str, tuple[float, list[str]] | None]:
    """Per engine: MiB on disk of what it adds to vrfer (see the module docstring), and those distributions."""
    base = closure(["vrfer", "pyarrow", "pandas"])
    out = {}
    for engine, dists in (("dask", ["dask", "distributed"]), ("ray", ["ray"])):
        try:
            metadata.distribution(dists[0])
        except metadata.PackageNotFoundError:
            out[engine] = None
            continue
        extra = closure(dists) - base
        out[engine] = (size_mib(extra), sorted(extra))
    return out


def run_driver(engine: str, videos: list[str], frames: int) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--driver", engine, "--frames", str(frames), *videos],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"bench_ray_vs_dask: the {engine} driver exited {r.returncode}: {r.stderr.strip()[-800:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=45, help="frames per video (30 fps, 640x480)")
    ap.add_argument("--starts", type=int, default=3, help="starts of each engine (min and median reported)")
    ap.add_argument("--driver", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.driver:
        print(json.dumps(drive(a.driver, a.paths, a.frames)))
        return
    from tqdm import tqdm
    load0 = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], check=True, capture_output=True,
                text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    sizes = install_sizes()
    engines = [e for e in ENGINES if sizes[e] is not None]
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_vs_dask"))
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    try:
        videos = [str(v) for v in make_videos(tmp, a.videos, a.frames)]
        with tqdm(total=a.starts * len(engines), desc="starts", file=sys.stderr) as bar:
            for _ in range(a.starts):
                for e in engines:
                    runs[e].append(run_driver(e, videos, a.frames))
                    bar.update()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()

    def mm(e: str, k: str, fmt: str, best=min) -> str:
        xs = [r[k] for r in runs[e]]
        return f"{format(best(xs), fmt)} / {format(statistics.median(xs), fmt)}"

    print(f"CPU: {cpu}; {os.cpu_count()} CPUs, affinity {sorted(os.sched_getaffinity(0))}; load average before "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"job: {a.videos} videos x {a.frames} frames 640x480 = {a.videos * a.frames} frames, one task each "
          f"(vrfer.batch.unit.run_item: {_options()['model']}, --face detect, --smooth 0.4, models loaded cold); "
          f"2 worker processes x 1 thread; {a.starts} starts of each engine, each in a new driver process")
    for e in ENGINES:
        s = sizes[e]
        if s is None:
            print(f"{e}: not installed (pip install {'ray' if e == 'ray' else 'vrfer[batch]'}): not measured")
    versions = {e: metadata.version("distributed" if e == "dask" else "ray") for e in engines}
    w = 28
    print(f"{'':{w}}" + "".join(f"{e + ' ' + versions[e]:>24}" for e in engines))
    rows = [("import in the driver, s", "import_s", ".2f", min),
            ("cluster start-up, s", "startup_s", ".2f", min),
            ("RSS idle, MiB (all procs)", "idle_mib", ".0f", min),
            ("processes idle", "idle_procs", "d", min),
            ("RSS peak in the job, MiB", "job_mib", ".0f", min),
            ("processes in the job", "job_procs", "d", min),
            ("job frames/s", "fps", ".1f", max),
            ("driver process wall, s", "process_s", ".1f", min)]
    for label, k, fmt, best in rows:
        print(f"{label:{w}}" + "".join(f"{mm(e, k, fmt, best):>24}" for e in engines))
    print(f"{'install size, MiB':{w}}" + "".join(f"{sizes[e][0]:>24.0f}" for e in engines))
    print("(best / median of the starts: min for times and memory, max for frames/s)")
    for e in engines:
        print(f"{e}, each start in order: start-up s " + ", ".join(f"{r['startup_s']:.2f}" for r in runs[e])
              + "; frames/s " + ", ".join(f"{r['fps']:.1f}" for r in runs[e]))
    for e in engines:
        names, outside = runs[e][-1]["listing"]
        print(f"{e}, idle, the last start: {len(names)} processes (name, RSS MiB): "
              + ", ".join(f"{n} {m}" for n, m in names)
              + (f"; {outside} Ray processes outside the driver's tree (not summed)" if e == "ray" else ""))
    for e in engines:
        print(f"{e} adds to vrfer: {', '.join(sizes[e][1])}")


if __name__ == "__main__":
    main()
