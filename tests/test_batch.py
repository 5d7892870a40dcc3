"""vrfer.batch (issue 32, part): the row schema and the job folder's manifest (exactly-once bookkeeping). The
Dask engine and its tests on a 2-worker cluster are not written yet."""

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
    from vrfer.recognizer import Item
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
    assert main(args) == 1
    again = json.loads(capfd.readouterr().out)
    assert (again["done"], again["skipped"], again["frames"]) == (0, 2, 0)
    rows = pq.read_table(tmp_path / "out" / "frames").to_pylist()
    assert sorted((r["source"].rsplit("/", 1)[1], r["frame"]) for r in rows) == \
        [("v3.avi", i) for i in range(3)] + [("v4.avi", i) for i in range(4)]
