"""vrfer.batch (issue 32, part): the row schema, the job folder's manifest (exactly-once bookkeeping), a run on a
2-worker Dask cluster, and the report (summary, episodes, timelines, index.html) on synthetic committed rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrfer.batch.job import Job, item_key
from vrfer.batch.rows import VideoRows, columns
from vrfer.classes import CLASSES
from vrfer.errors import VrferError
from vrfer.results import FacePrediction


def _pred(frame):
    return FacePrediction.of((1, 2, 3, 4), [1 / 8] * 8, CLASSES, source="v.avi", frame=frame)


def test_track_id_counts_the_runs_of_the_face_and_time_is_frame_over_fps():
    v = VideoRows(CLASSES, fps=10.0)
    for i, seen in enumerate([1, 1, 0, 0, 1, 0, 1]):
        v.add(i, [_pred(i)] if seen else None)
    assert [r["track_id"] for r in v.rows] == [0, 0, 1, 2]
    assert [r["time"] for r in v.rows] == [0.0, 0.1, 0.4, 0.6]
    assert v.frames == 7 and v.lost == 3
    assert list(v.rows[0]) == columns(CLASSES)


def test_a_commit_counts_only_once_its_line_is_written_and_a_rerun_removes_the_rest(tmp_path):
    job = Job(tmp_path / "out")
    job.open({"model": "a"})
    for key in ("done", "renamed-not-committed"):
        (job.staging / f"{key}.parquet").write_bytes(b"x")
    job.commit({"key": "done"}, job.staging / "done.parquet", None)
    (job.staging / "renamed-not-committed.parquet").rename(job.frames / "renamed-not-committed.parquet")
    (job.staging / "partial.parquet").write_bytes(b"x")                 # a killed worker's leftover
    with open(job.manifest, "a") as fh:                                 # a crash in the middle of an append
        fh.write('{"key": "torn"')
    assert set(job.committed()) == {"done"}
    job.clean()
    assert sorted(f.name for f in job.frames.iterdir()) == ["done.parquet"]
    assert list(job.staging.iterdir()) == []
    job.commit({"key": "next"}, _staged(job, "next"), None)             # the next line is whole after the cut
    assert set(job.committed()) == {"done", "next"}


def _staged(job, key):
    (job.staging / f"{key}.parquet").write_bytes(b"x")
    return job.staging / f"{key}.parquet"


def test_a_rerun_with_other_options_is_refused(tmp_path):
    Job(tmp_path).open({"model": "a", "smooth": 0.4})
    Job(tmp_path).open({"model": "a", "smooth": 0.4})
    with pytest.raises(VrferError, match="other options \\(smooth\\)"):
        Job(tmp_path).open({"model": "a", "smooth": 0.2})


def test_item_keys_differ_for_same_names_in_different_folders(tmp_path):
    assert item_key(tmp_path / "a" / "clip.avi") != item_key(tmp_path / "b" / "clip.avi")
    assert item_key(tmp_path / "a b" / "clip 1.avi").startswith("clip_1-")


def test_a_video_units_rows_equal_predict_json_and_commit_into_the_job(tmp_path, capfd):
    """The worker's unit (no Dask here) gives predict's rows for the same video, model and options."""
    import json

    import pyarrow.parquet as pq
    import torch
    from test_predict import fer_faces, write_video

    from vrfer.batch.unit import run_item
    from vrfer.cli import main
    from vrfer.models.registry import create_model, save_model
    from vrfer.inputs import Item
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), model)
    video = write_video(tmp_path / "clip.avi", fer_faces(5))
    rc = main(["predict", "--threads", "1", "--no-progress", str(video), "--model", str(model), "--face", "none",
               "--smooth", "0.4", "--json"])
    want = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    job = Job(tmp_path / "out")
    job.open({})
    got = run_item(Item("video", str(video), str(video)), {"model": str(model), "face": "none", "smooth": 0.4,
                                                            "threads": 1}, job.staging)
    assert rc == 0 and got["frames"] == 5 and got["rows"] == 5 and got["lost"] == 0
    job.commit({"key": got["key"]}, Path(got["staged"]), None)
    table = pq.read_table(job.frames).to_pylist()
    assert [(r["frame"], r["label"], [r[c] for c in CLASSES], r["smoothed_label"]) for r in table] == \
        [(d["frame"], d["label"], list(d["probs"].values()), d["smoothed_label"]) for d in want]
    # a worker whose file at the model's path holds other weights than the job names: that input fails, in words
    other = run_item(Item("video", str(video), str(video)), {"model": str(model), "face": "none", "smooth": 0.4,
                                                              "threads": 1, "model_sha256": "0" * 64}, job.staging)
    assert "other weights" in other["error"] and "same path on every worker" in other["error"]


def test_recognizer_video_table_gives_the_batch_rows_of_a_video(tmp_path):
    """Recognizer.video_table: the same DataFrame (columns, types, values) as the batch unit's Parquet rows."""
    import pandas as pd
    import pyarrow.parquet as pq
    from test_predict import fer_faces, write_video

    from vrfer.batch.unit import run_item
    from vrfer.recognizer import Recognizer
    from vrfer.inputs import Item
    model = _small_model(tmp_path)
    video = write_video(tmp_path / "clip.avi", fer_faces(6))
    options = {"model": str(model), "face": "none", "smooth": 0.4, "threads": 1}
    got = run_item(Item("video", str(video), str(video)), options, tmp_path)
    want = pq.read_table(got["staged"]).to_pandas()
    table = Recognizer(str(model), face="none", alpha=0.4, threads=1).video_table(video)
    assert list(table.columns) == columns(CLASSES) and len(table) == 6
    pd.testing.assert_frame_equal(table, want)
    assert table["time"].tolist() == [i / 10 for i in range(6)] and table["model_sha256"].notna().all()


def test_batch_on_a_real_2_worker_cluster_commits_each_video_once_and_lists_the_unreadable_one(tmp_path, capfd):
    """`vrfer batch --workers 2`: a local Dask cluster of 2 worker processes on 127.0.0.1, started and stopped by the
    command; a rerun redoes nothing."""
    import json

    import pyarrow.parquet as pq
    import torch
    from test_predict import fer_faces, write_video

    from vrfer.cli import main
    from vrfer.models.registry import create_model, save_model
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), model)
    src = tmp_path / "in"
    src.mkdir()
    for n in (3, 4):
        write_video(src / f"v{n}.avi", fer_faces(n))
    (src / "broken.avi").write_bytes(b"not a video")
    args = ["batch", str(src), "--out", str(tmp_path / "out"), "--workers", "2", "--model", str(model),
            "--face", "none", "--json", "--no-progress"]
    assert main(args) == 1
    first = json.loads(capfd.readouterr().out)
    assert (first["done"], first["failed"], first["frames"]) == (2, 1, 7)
    failures = (tmp_path / "out" / "failures.csv").read_text().splitlines()
    assert len(failures) == 2 and "broken.avi" in failures[1]
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and len(list((tmp_path / "out" / "timelines").glob("*.png"))) == 2
    (tmp_path / "out" / "index.html").unlink()                         # a rerun with nothing to do writes the report
    assert main(args) == 1
    again = json.loads(capfd.readouterr().out)
    assert (tmp_path / "out" / "summary.csv").read_text().splitlines() == summary
    assert (tmp_path / "out" / "index.html").read_text().count('href="timelines/') == 2
    assert (again["done"], again["skipped"], again["frames"]) == (0, 2, 0)
    rows = pq.read_table(tmp_path / "out" / "frames").to_pylist()
    assert sorted((r["source"].rsplit("/", 1)[1], r["frame"]) for r in rows) == \
        [("v3.avi", i) for i in range(3)] + [("v4.avi", i) for i in range(4)]
    # the rows the cluster wrote are `vrfer predict --json`'s on the same videos, same model, backend and smoothing
    assert main(["predict", str(src / "v3.avi"), str(src / "v4.avi"), "--model", str(model), "--face", "none",
                 "--smooth", "0.4", "--json", "--no-progress"]) == 0
    predicted = {(d["source"], d["frame"]): d for d in map(json.loads, capfd.readouterr().out.splitlines())}
    assert len(predicted) == len(rows) == 7
    for r in rows:
        d = predicted[(r["source"], r["frame"])]
        assert (r["label"], r["score"], r["smoothed_label"]) == (d["label"], d["score"], d["smoothed_label"])
        assert [r[c] for c in CLASSES] == [d["probs"][c] for c in CLASSES]
        assert [r["x"], r["y"], r["w"], r["h"]] == d["box"]


# --- the report (vrfer.batch.report): summary, episodes, timelines, index.html --------------------------------------

def _synthetic_rows(source, labels, fps=10.0, held=(), smoothed=True, seed=0):
    """Rows of a video whose frame i has label labels[i] (None: no face in that frame), probabilities peaked on it."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for i, lab in enumerate(labels):
        if lab is None:
            continue
        p = rng.dirichlet(np.ones(len(CLASSES)))
        p = 0.4 * p + 0.6 * np.eye(len(CLASSES))[CLASSES.index(lab)]
        row = dict.fromkeys(columns(CLASSES))
        row.update(source=source, frame=i, time=i / fps, x=0, y=0, w=10, h=10, track_id=0,
                   label=CLASSES[int(np.argmax(p))], score=float(p.max()), held=i in held)
        row.update(zip(CLASSES, map(float, p)))
        if smoothed:
            row.update((f"smoothed_{c}", float(v)) for c, v in zip(CLASSES, p))
            row["smoothed_label"] = lab
        out.append(row)
    return out


def _synthetic_job(tmp_path, videos, fps=10.0, held=None):
    """A job folder with committed inputs {source: labels} (no model, no cluster): the report's input. held:
    {source: frames whose face was held}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vrfer.batch.rows import schema
    job = Job(tmp_path / "out")
    job.open({})
    for k, (source, labels) in enumerate(videos.items()):
        rows = _synthetic_rows(source, labels, fps, (held or {}).get(source, ()), seed=k)
        key = item_key(source)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema(CLASSES)), job.staging / f"{key}.parquet")
        kind = "image" if source.endswith(".png") else "video"
        job.commit({"key": key, "source": source, "kind": kind, "frames": len(labels),
                    "lost": sum(lab is None for lab in labels), "rows": len(rows),
                    "fps": None if kind == "image" else fps}, job.staging / f"{key}.parquet", None)
    return job


def test_episodes_are_runs_of_one_smoothed_label_lasting_half_a_second_or_more():
    import pandas as pd

    from vrfer.batch.report import episodes
    labels = ["happiness"] * 7 + ["anger"] * 4 + ["anger"] * 2 + [None] + ["anger"] * 5 + ["neutral"] * 5
    rows = pd.DataFrame(_synthetic_rows("v.avi", labels, fps=10.0))
    rows.loc[rows["frame"] == 3, "label"] = "fear"            # the raw label differs: the smoothed one counts
    ep = episodes(rows, 10.0)
    assert list(ep["expression"]) == ["happiness", "anger", "anger", "neutral"]   # broken by the frame with no face
    assert list(ep["start_s"]) == [0.0, 0.7, 1.4, 1.9] and list(ep["end_s"]) == [0.7, 1.3, 1.9, 2.4]
    assert ep["mean_score"].iat[0] == pytest.approx(rows["smoothed_happiness"][:7].mean(), abs=1e-6)
    assert list(episodes(rows, 5.0)["end_s"]) == [1.4, 2.6, 3.8, 4.8]            # at 5 fps each run is long enough
    short = pd.DataFrame(_synthetic_rows("v.avi", ["fear"] * 4 + ["sadness"] * 5, fps=10.0))
    assert list(episodes(short, 10.0)["expression"]) == ["sadness"]               # 0.4 s is no episode, 0.5 s is
    raw = pd.DataFrame(_synthetic_rows("v.avi", ["fear"] * 6 + ["anger"] * 4, fps=10.0, smoothed=False))
    assert list(episodes(raw, 10.0)["expression"]) == ["fear"]                    # no smoothing: the raw label
    assert episodes(raw, None).empty                                              # no frame rate, no times


def test_summary_shares_sum_to_one_and_match_the_frame_rows_and_the_index_links_every_timeline(tmp_path):
    import re
    from html.parser import HTMLParser
    from urllib.parse import unquote

    import pandas as pd
    import pyarrow.parquet as pq

    from vrfer.batch.report import write_report
    videos = {"/data/p1 <&> session.avi": ["happiness"] * 12 + [None] * 3 + ["sadness"] * 9,
              "/data/p2.avi": ["neutral"] * 4 + ["surprise"] * 20,
              "/data/photo.png": ["anger"]}
    job = _synthetic_job(tmp_path, videos, held={"/data/p1 <&> session.avi": {16, 17}})
    write_report(job)
    summary = pd.read_csv(job.dir / "summary.csv")
    assert summary.equals(pd.read_parquet(job.dir / "summary.parquet").astype(summary.dtypes.to_dict()))
    rows = pq.read_table(job.frames).to_pandas()
    shares = summary.filter(like="share_")
    assert list(shares.columns) == [f"share_{c}" for c in CLASSES]
    assert shares.sum(axis=1).to_numpy() == pytest.approx(1.0)
    for s in summary.to_dict("records"):
        want = rows[rows["source"] == s["source"]]["smoothed_label"].value_counts(normalize=True)
        assert {c: s[f"share_{c}"] for c in CLASSES} == pytest.approx({c: want.get(c, 0.0) for c in CLASSES})
        assert s["frames"] == len(videos[s["source"]])
    p1 = summary.set_index("source").loc["/data/p1 <&> session.avi"]
    assert (p1["duration_s"], p1["faces_lost"], p1["episodes"]) == (2.4, 3 + 2, 2)   # no face + held
    assert summary.set_index("source").loc["/data/photo.png", "duration_s"] == 0
    episodes = pd.read_csv(job.dir / "episodes.csv")
    assert list(episodes.columns) == ["source", "start_s", "end_s", "expression", "mean_score"]
    assert list(episodes[episodes["source"] == "/data/p2.avi"]["expression"]) == ["surprise"]

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.links: dict[str, str] = {}
            self._href = None

        def handle_starttag(self, tag, attrs):
            self._href = dict(attrs).get("href") if tag == "a" else None

        def handle_data(self, data):
            if self._href:
                self.links[data] = self._href

    page = (job.dir / "index.html").read_text()
    parser = Links()
    parser.feed(page)
    for source in ("/data/p1 <&> session.avi", "/data/p2.avi"):
        href = parser.links[source]                                    # the name, html-escaped, links its timeline
        assert href.startswith("timelines/") and (job.dir / unquote(href)).is_file()
    assert "/data/photo.png" not in parser.links and "<&>" not in page and not re.search(r'(src|href)="https?:', page)
    assert all((job.dir / unquote(h)).is_file() for h in parser.links.values())


def test_a_rerun_rewrites_the_report_and_keeps_the_timelines(tmp_path):
    from vrfer.batch.report import write_report
    job = _synthetic_job(tmp_path, {"/data/a.avi": ["fear"] * 8})
    write_report(job)
    png = next(job.timelines.iterdir())
    before = png.stat().st_mtime_ns
    (job.dir / "summary.csv").unlink()
    job.clean()
    write_report(job)
    assert (job.dir / "summary.csv").is_file() and png.stat().st_mtime_ns == before


# --- interrupted and killed: the same command finishes the job, every frame exactly once ----------------------------

def _long_videos(folder: Path, n: int, frames: int) -> list[Path]:
    """n videos of `frames` frames (the bundled FER+ faces over and over), each a second or more of work."""
    from test_predict import fer_faces, write_video
    folder.mkdir()
    faces = fer_faces(8)
    return [write_video(folder / f"s{k}.avi", [faces[(i + k) % 8] for i in range(frames)]) for k in range(n)]


def _small_model(tmp_path) -> Path:
    import torch

    from vrfer.models.registry import create_model, save_model
    torch.manual_seed(0)
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), model)
    return model


def _wait_for(cond, timeout: float, what: str) -> None:
    import time
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def _committed(out: Path) -> int:
    m = out / "manifest.jsonl"
    return m.read_text().count("\n") if m.exists() else 0


def _each_frame_once(out: Path, videos: list[Path], frames: int) -> None:
    import pyarrow.parquet as pq
    rows = pq.read_table(out / "frames").to_pylist()
    assert sorted((r["source"], r["frame"]) for r in rows) == sorted((str(v), i) for v in videos for i in range(frames))


def test_an_interrupted_batch_exits_130_in_one_line_and_the_same_command_finishes_it(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the command's process group: the command and its workers) mid-run: exit 130,
    one line, its cluster gone; the rerun does the rest: committed videos untouched (same bytes, same mtime), no frame
    twice, none lost."""
    import json
    import os
    import signal
    import subprocess
    import sys

    import psutil
    model = _small_model(tmp_path)
    n, frames = 10, 400     # enough videos left after the first commit even when a busy machine commits in bursts
    videos = _long_videos(tmp_path / "in", n, frames)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vrfer", "batch", str(tmp_path / "in"), "--out", str(out), "--workers", "2",
           "--model", str(model), "--face", "none", "--json", "--no-progress"]
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored (as every background
    # job does, and Python then keeps it so): the command gets the terminal's default, as when a person runs it
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(lambda: _committed(out) >= 1 or p.poll() is not None, 180, "the first committed video")
        workers = psutil.Process(p.pid).children(recursive=True)
        os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and stdout == "" and stderr.splitlines() == ["vrfer: interrupted"]
    done = _committed(out)
    assert 1 <= done < n                                       # interrupted mid-run, some videos finished
    assert len(workers) >= 2
    psutil.wait_procs(workers, timeout=30)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]  # cluster stopped
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in (out / "frames").iterdir()}
    assert len(before) == done

    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["done"], report["skipped"], report["failed"], report["frames"]) == (n - done, done, 0,
                                                                                       (n - done) * frames)
    assert all((out / "frames" / name).stat().st_mtime_ns == mtime and (out / "frames" / name).read_bytes() == data
               for name, (mtime, data) in before.items())
    assert _committed(out) == n and len(os.listdir(out / "frames")) == n and not os.listdir(out / ".staging")
    _each_frame_once(out, videos, frames)


def test_a_worker_killed_in_the_middle_of_a_video_still_gives_every_frame_exactly_once(tmp_path):
    """A running 2-worker cluster (started here on 127.0.0.1), `vrfer batch --address` on it; one worker process (its
    pid from the worker itself, client.run) is SIGKILLed while it runs a video: Dask runs that video again elsewhere and the job ends with exit 0, each frame
    once."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from vrfer.batch.engine import client as local_cluster
    model = _small_model(tmp_path)
    n, frames = 4, 400
    videos = _long_videos(tmp_path / "in", n, frames)
    out = tmp_path / "out"
    client = local_cluster(2)                                  # the local cluster `vrfer batch --workers 2` starts
    cluster = client.cluster
    try:
        cmd = [sys.executable, "-m", "vrfer", "batch", str(tmp_path / "in"), "--out", str(out), "--address",
               cluster.scheduler_address, "--model", str(model), "--face", "none", "--json", "--no-progress"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _committed(out) >= 1 or p.poll() is not None, 180, "the first committed video")
            busy = [pid for k, pid in client.run(lambda dask_worker: (len(dask_worker.state.executing),
                                                                         os.getpid())).values() if k]
            assert busy and _committed(out) < n, "no worker was in the middle of a video"
            os.kill(busy[0], signal.SIGKILL)
            stdout, stderr = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
    finally:
        client.close()
        cluster.close()
    assert p.returncode == 0, stderr
    report = json.loads(stdout)
    assert (report["done"], report["failed"], report["frames"]) == (n, 0, n * frames)
    assert _committed(out) == n and not os.listdir(out / ".staging")
    _each_frame_once(out, videos, frames)


def test_the_local_clusters_workers_keep_mallocs_adaptive_mmap_threshold_and_do_not_profile_or_poll(monkeypatch):
    """Dask's nanny would set MALLOC_TRIM_THRESHOLD_ in each worker, which turns glibc's adaptive mmap threshold off:
    every frame-sized buffer a fresh mmap, ~225 page faults per 640x480 frame buffer (docs/SETUP.md, "Dask or Ray").
    vrfer batch's local cluster leaves it out (its other settings, OMP_NUM_THREADS=1, kept); a buffer allocated
    and freed over and over then faults in no fresh pages. Nor does a worker run Dask's profiler, and its event
    loop's health checks and resource sampling run seldom (vrfer.batch.engine.WORKER_CONFIG)."""
    import os
    import sys

    from vrfer.batch.engine import client as local_cluster
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    def in_worker():
        import resource

        import numpy as np
        np.ones((480, 640, 3), np.uint8)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            frame = np.ones((480, 640, 3), np.uint8)
            del frame
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 50
        import dask
        return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
                dask.config.get("distributed.worker.profile.enabled"), faults,
                [dask.config.get(k) for k in ("distributed.admin.tick.interval",
                                              "distributed.admin.system-monitor.interval",
                                              "distributed.worker.memory.monitor-interval")])

    client = local_cluster(1)
    try:
        [(trim, omp, profile, faults, intervals)] = client.run(in_worker).values()
    finally:
        client.close()
        client.cluster.close()
    assert (trim, omp, profile) == (None, "1", False)
    assert intervals == ["1s", "5s", "1s"]       # the event loop's checks and resource sampling, seldom
    if sys.platform.startswith("linux"):        # glibc's malloc; with the threshold set: ~225 a buffer
        assert faults < 20, faults
