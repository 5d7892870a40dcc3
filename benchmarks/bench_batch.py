"""`vrfer batch` on this machine: frames/s with 1 and 2 Dask workers, against plain `vrfer predict` on the same videos.

    python benchmarks/bench_batch.py                      # 4 videos x 120 frames (30 fps), 3 repeats: ~2-4 min
    python benchmarks/bench_batch.py --videos 2 --frames 60 --repeats 1 --keep /tmp/bb   # a quick look, output kept

Videos: synthetic, made into a temporary folder from the two bundled sample photos (src/vrfer/samples/photo-*.jpg,
faces behind a synthetic headset), each 300 px in a 640x480 frame, drifting slowly (the face is tracked), MJPG .avi
at 30 fps. Every command runs as the user runs it (a child process, imports included), with the default model and
options (face detection, smoothing 0.4), each in turn in every repeat:

    predict    taskset -c 0   vrfer predict --threads 1 --no-progress --json VIDEOS
    batch x1   taskset -c 0   vrfer batch VIDEOS --out NEW --workers 1 --json --no-progress
    batch x2   taskset -c 0,1 vrfer batch VIDEOS --out NEW --workers 2 --json --no-progress

(one core for predict and the 1-worker batch: its client, scheduler and worker share it). Reported: wall time of
the command (min, median), frames/s of the whole command and of the batch's work phase (its --json report:
startup_s = the local cluster up, work_s = the tasks, model loads in the workers included, report_s = summary,
timelines, index.html), the scaling ratio 2 workers / 1 worker, the overhead of the 1-worker batch against predict.
Then, in this process, a probe of a 2-worker cluster (started as `vrfer batch` starts it, not pinned): start-up time,
the RSS of each worker process idle and after one video (model loaded; current and peak), and the steady rate of
warm workers (the model loaded, what a long job sees): one video on one worker, then two videos on two workers at
once, --repeats times. Last, on paper: hours of 30 fps video per hour on a 100-core cluster at the warm per-worker
rate, assuming the rate is linear in cores (one single-threaded worker per core).
The load average is printed before and after: other jobs on the machine depress every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 30


def make_videos(folder: Path, n: int, frames: int) -> list[Path]:
    """n synthetic videos of `frames` frames from the bundled sample photos (see the module docstring)."""
    import cv2

    from vrfer.inputs import samples_path
    photos = sorted(samples_path().glob("photo-*.jpg"))
    out = []
    for k in range(n):
        face = cv2.resize(cv2.imread(str(photos[k % len(photos)])), (300, 300), interpolation=cv2.INTER_AREA)
        path = folder / f"session{k:02d}.avi"
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
        for i in range(frames):
            frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
            dx = round(40 * np.sin(2 * np.pi * (i / 90 + k / n)))
            dy = round(15 * np.cos(2 * np.pi * i / 120))
            frame[90 + dy:390 + dy, 170 + dx:470 + dx] = face
            vw.write(frame)
        vw.release()
        out.append(path)
    return out


def vrfer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vrfer", *args]


def timed(cmd: list[str], cpus: str) -> tuple[float, str]:
    """(wall seconds, stdout) of a command pinned to `cpus` (taskset)."""
    t = time.perf_counter()
    r = subprocess.run(["taskset", "-c", cpus, *cmd], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"bench_batch: {' '.join(cmd[2:5])}... exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return wall, r.stdout


def probe(videos: list[Path], frames: int, repeats: int) -> dict:
    """A local cluster of 2 workers as `vrfer batch` starts it: start-up seconds, each worker's RSS idle and after
    one video; then, the model loaded, frames/s of one video on one worker, and of two videos on two at once."""
    import resource

    from vrfer.batch.engine import client
    from vrfer.batch.unit import run_item
    from vrfer.inputs import Item

    def rss_mib():
        import psutil
        return psutil.Process().memory_info().rss / 2**20

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t = time.perf_counter()
    c = client(2)
    c.wait_for_workers(2)
    up = time.perf_counter() - t
    try:
        idle = c.run(rss_mib)
        staging = Path(tempfile.mkdtemp(prefix="bench_batch_probe"))
        options = {"model": _default_model(), "backend": "auto", "face": "detect", "smooth": 0.4, "prior": None,
                   "prior_tau": None, "classes": None, "profile": None, "threads": 1}
        ws = sorted(idle)

        def run(pairs) -> float:
            """Seconds to run these (worker, video) pairs at once."""
            t = time.perf_counter()
            c.gather([c.submit(run_item, Item("video", str(v), str(v)), options, str(staging), pure=False,
                               workers=[w]) for w, v in pairs])
            return time.perf_counter() - t

        run(zip(ws, videos))                               # the first video of each worker loads the model
        loaded, peak = c.run(rss_mib), c.run(peak_mib)
        one, two = [], []
        for _ in range(repeats):                           # warm workers: frames/s of 1 busy worker, of 2
            one.append(frames / run([(ws[0], videos[0])]))
            two.append(2 * frames / run(zip(ws, videos)))
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        c.close()
        c.cluster.close()
    return {"startup_s": up, "idle": sorted(idle.values()), "loaded": sorted(loaded.values()),
            "peak": sorted(peak.values()), "one": one, "two": two}


def _default_model() -> str:
    from vrfer.batch import DEFAULT_MODEL
    return str(DEFAULT_MODEL)


def stats(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=120, help="frames per video (30 fps)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the last 2-worker output folder here")
    a = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench_batch: needs 2 CPUs (the 2-worker rows are pinned to cores 0,1)")
    load0 = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], check=True, capture_output=True,
                text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch"))
    try:
        videos = make_videos(tmp, a.videos, a.frames)
        names = [str(v) for v in videos]
        total = a.videos * a.frames
        walls: dict[str, list[float]] = {"predict": [], "batch x1": [], "batch x2": []}
        reports: dict[str, list[dict]] = {"batch x1": [], "batch x2": []}
        rows = None
        for r in range(a.repeats):
            wall, out = timed(vrfer_cmd("predict", "--threads", "1", "--no-progress", "--json", *names), "0")
            walls["predict"].append(wall)
            rows = len(out.splitlines())
            for label, n, cpus in (("batch x1", 1, "0"), ("batch x2", 2, "0,1")):
                dest = tmp / f"out-{r}-{n}"
                wall, out = timed(vrfer_cmd("batch", *names, "--out", str(dest), "--workers", str(n), "--json",
                                            "--no-progress"), cpus)
                rep = json.loads(out)
                if rep["frames"] != total or rep["failed"]:
                    sys.exit(f"bench_batch: {label}: {rep}")
                walls[label].append(wall)
                reports[label].append(rep)
                if a.keep and label == "batch x2" and r == a.repeats - 1:
                    shutil.rmtree(a.keep, ignore_errors=True)
                    shutil.copytree(dest, a.keep)
                shutil.rmtree(dest, ignore_errors=True)
            print(f"repeat {r + 1}/{a.repeats} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
        pr = probe(videos, a.frames, a.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()

    print(f"CPU: {cpu}, {os.cpu_count()} CPUs; load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"videos: {a.videos} x {a.frames} frames 640x480 at {FPS} fps = {total} frames; predict rows {rows}; "
          f"model {_default_model()} (backend auto), --face detect, --smooth 0.4; {a.repeats} repeats; 1 thread "
          "per worker")
    print(f"{'':10} {'taskset':>7} {'wall s min':>10} {'median':>7} {'frames/s best':>13} {'median':>7}   "
          f"{'start-up s':>10} {'work s':>7} {'report s':>8}   {'work frames/s best':>18} {'median':>7}")
    fps = {}
    for label, cpus in (("predict", "0"), ("batch x1", "0"), ("batch x2", "0,1")):
        lo, med = stats(walls[label])
        fps[label] = total / med
        extra = ""
        if label in reports:
            rs = reports[label]
            (su0, su), (wk0, wk), (rp0, rp) = (stats([x[k] for x in rs]) for k in ("startup_s", "work_s", "report_s"))
            fps[label + " work"] = total / wk
            extra = (f"{su0:4.2f}/{su:4.2f} {wk0:5.2f}/{wk:5.2f} {rp0:4.2f}/{rp:4.2f}   {total / wk0:18.1f} "
                     f"{total / wk:7.1f}")
        print(f"{label:10} {cpus:>7} {lo:10.2f} {med:7.2f} {total / lo:13.1f} {total / med:7.1f}   {extra}")
    print("(wall: the whole command, imports included; frames/s = frames / wall (best: the fastest repeat); "
          "start-up, work, report: the batch's --json phases, min/median s; work frames/s = frames / work s)")
    print(f"scaling 2 workers / 1 worker: whole command {fps['batch x2'] / fps['batch x1']:.2f}x, "
          f"work phase {fps['batch x2 work'] / fps['batch x1 work']:.2f}x")
    (p0, p), (b0, b) = stats(walls["predict"]), stats(walls["batch x1"])
    print(f"overhead of batch x1 against predict, wall: medians {b - p:+.2f} s ({b / p:.2f}x), fastest "
          f"{b0 - p0:+.2f} s ({b0 / p0:.2f}x)")
    print(f"probe, 2 workers: cluster start-up {pr['startup_s']:.2f} s; RSS per worker MiB: idle "
          f"{', '.join(f'{x:.0f}' for x in pr['idle'])}; after one video {', '.join(f'{x:.0f}' for x in pr['loaded'])}"
          f" (peak {', '.join(f'{x:.0f}' for x in pr['peak'])})")
    o0, o = max(pr["one"]), statistics.median(pr["one"])
    t0, t = max(pr["two"]), statistics.median(pr["two"])
    print(f"probe, warm workers (model loaded), one video of {a.frames} frames each, not pinned: 1 worker "
          f"{o0:.1f} frames/s best, {o:.1f} median; 2 workers at once {t0:.1f} best, {t:.1f} median; "
          f"scaling {t / o:.2f}x (medians)")
    per_core = min(o, t / 2)
    print(f"on paper: {per_core:.1f} frames/s per single-threaded worker (warm, median: the lower of 1 worker and "
          "2 workers / 2) "
          f"x 100 cores / {FPS} fps = {per_core * 100 / FPS:.0f} hours of {FPS} fps video per hour "
          "(assumes linear scaling per core)")


if __name__ == "__main__":
    main()
