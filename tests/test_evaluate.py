"""vrfer evaluate and vrfer reproduce on small generated data; bundled models on real FER+ when present."""

import json

import numpy as np
import pytest
from fakedata import make_rows, write_folders

from vrfer.cli import main
from vrfer.datasets.ferplus import load_ferplus
from vrfer.evaluate import evaluate
from vrfer.metrics import bootstrap_ci
from vrfer.models import create_model, save_model


@pytest.fixture
def root(tmp_path_factory, private_cache):
    return write_folders(tmp_path_factory.mktemp("fer"), make_rows(n_per_split=40))


def test_bootstrap_interval_contains_the_accuracy_and_narrows_with_more_data():
    small = np.array([1, 0] * 50, float)
    big = np.array([1, 0] * 2000, float)
    lo, hi = bootstrap_ci(small)
    assert lo < 0.5 < hi
    blo, bhi = bootstrap_ci(big)
    assert (bhi - blo) < (hi - lo) / 3


def test_evaluate_counts_per_class_and_confusion(root):
    data = load_ferplus(root, "test")
    model = create_model("vrfer-cnn-small", pretrained=False, image_size=24)
    r = evaluate(model, data, "upper-half")
    cm = np.array(r["confusion"])
    assert cm.sum() == r["n"] == len(data)
    assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert r == evaluate(model, data, "upper-half")  # deterministic


def test_occlusion_makes_no_difference_to_a_visible_half_model(root):
    data = load_ferplus(root, "test")
    vis = create_model("vrfer-cnn-small", pretrained=False, image_size=24, input_mode="visible-half")
    # a visible-half model never sees the upper rows: the occlusion makes no difference to it
    assert evaluate(vis, data, "none")["confusion"] == evaluate(vis, data, "upper-half")["confusion"]


def test_evaluate_cli_json_and_png(root, tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), path)
    code = main(["evaluate", "--model", str(path), "--dataset", "ferplus", "--root", str(root), "--split", "test",
                 "--occlusion", "upper-half", "--json", "--out", str(tmp_path)])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "ci95", "per_class"} <= set(r)
    assert 0 <= r["accuracy"] <= 1 and r["n"] == len(load_ferplus(root, "test"))
    png = tmp_path / "confusion-m-ferplus-test-upper-half.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_cli_unknown_model_is_one_line(root, capsys):
    assert main(["evaluate", "--model", "no-such-model", "--root", str(root)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_reproduce_trains_both_stages_and_writes_the_table(root, tmp_path, capsys):
    small = ["model=\"vrfer-cnn-small\"", "image_size=24", "optim.batch_size=8", "dsd.dense=1", "dsd.sparse=1",
             "dsd.redense=0", "data.label_mode=\"majority\""]
    args = ["reproduce", "--root", str(root), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--quiet"] + sum((["--set", s] for s in small), [])
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    cells = res["families"]["vrfer-cnn"]["cells"]
    assert set(cells) == {"full -> full", "full -> lower half", "lower half -> lower half"}
    table = (tmp_path / "out" / "table.md").read_text()
    assert "82.28" in table and "lower half" in table
    # finished runs are reused, not retrained
    mtime = (tmp_path / "runs" / "cpu-full" / "final.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (tmp_path / "runs" / "cpu-full" / "final.safetensors").stat().st_mtime_ns == mtime
    assert res["overrides"][:len(small)] == small
    assert res["families"]["vrfer-cnn"]["recipes"]["cpu-full"]["dsd"]["dense"] == 1   # what the table was made with
    # ... but only with the recipe they were trained with: a smoke test's runs never fill a real table
    capsys.readouterr()
    assert main(args[:-2]) == 2                                    # the same without the last --set
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another recipe" in err and "data.label_mode" in err
