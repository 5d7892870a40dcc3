"""`vrfer package` (vrfer.packaging): the packaged file is the input model renamed, with its whole config, so
it answers as the input did; re-shipping a model from its run keeps the shipped model's default post-processing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vrfer.cli import main
from vrfer.inference.torch_backend import TorchClassifier
from vrfer.models import create_model, save_model
from vrfer.models.registry import read_config
from vrfer.inference.postprocess import PostProcess

PRIOR = [0.34, 0.27, 0.12, 0.14, 0.09, 0.01, 0.02, 0.01]
DEFAULT_POST = {"prior": "uniform", "tau": 0.25}


def model_with(path, **extra):
    """A float16 model file (packaging then loses nothing) whose config carries `extra`."""
    torch.manual_seed(0)
    m = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half")
    m.cfg = replace(m.cfg, name="source", description="a test model", extra=extra)
    save_model(m, path, half=True)
    return path


def answers(path, prior=None) -> np.ndarray:
    """The model's answers on fixed face crops; prior None: with its own default post-processing."""
    m = create_model(str(path))
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    return PostProcess(m.cfg, prior).apply(TorchClassifier(m).predict_proba(faces))


def package(*argv) -> int:
    return main(["package", *map(str, argv)])


def test_a_packaged_model_keeps_its_config_and_answers(tmp_path, capsys):
    src = model_with(tmp_path / "src.safetensors", train_prior=PRIOR, default_post=DEFAULT_POST,
                     adapted={"base_model": "vrfer-lower", "faces": 40}, results={"valid_acc": "0.8"})
    out = tmp_path / "pkg.safetensors"
    assert package(src, "--name", "pkg", "--trained-on", "faces", "--out", out) == 0
    assert "prior 'uniform', tau 0.25" in capsys.readouterr().out
    before, after = read_config(src), read_config(out)
    assert after == replace(before, name="pkg", weights="pkg.safetensors", trained_on="faces")
    assert after.extra["default_post"] == DEFAULT_POST and after.extra["train_prior"] == PRIOR
    np.testing.assert_array_equal(answers(out), answers(src))
    assert not np.allclose(answers(out), answers(src, "train"))     # which default_post matters here


def test_results_are_added_to_those_the_model_carries(tmp_path):
    src = model_with(tmp_path / "src.safetensors", results={"valid_acc": "0.8"})
    out = tmp_path / "pkg.safetensors"
    assert package(src, "--name", "pkg", "--trained-on", "x", "--out", out, "--result", "test_acc=0.79") == 0
    assert read_config(out).extra["results"] == {"valid_acc": "0.8", "test_acc": "0.79"}


def test_reshipping_from_the_run_keeps_the_default_post_of_the_model_it_replaces(tmp_path, capsys):
    shipped = tmp_path / "m.safetensors"
    assert package(model_with(tmp_path / "a.safetensors", train_prior=PRIOR, default_post=DEFAULT_POST),
                   "--name", "m", "--trained-on", "x", "--out", shipped) == 0
    run = model_with(tmp_path / "best.safetensors", train_prior=PRIOR)    # a run's weights carry no default_post
    capsys.readouterr()
    assert package(run, "--name", "m", "--trained-on", "x", "--out", shipped) == 0
    assert "kept from the model it replaces" in capsys.readouterr().out
    assert read_config(shipped).extra["default_post"] == DEFAULT_POST
    # explicitly: another default, or the plain model
    assert package(run, "--name", "m", "--trained-on", "x", "--out", shipped, "--default-post", "uniform:0.5") == 0
    assert read_config(shipped).extra["default_post"] == {"prior": "uniform", "tau": 0.5}
    assert package(run, "--name", "m", "--trained-on", "x", "--out", shipped, "--default-post", "train") == 0
    assert read_config(shipped).extra["default_post"]["prior"] == "train"
    # a file of another model is no re-shipping: nothing is taken from it
    other = tmp_path / "other.safetensors"
    assert package(model_with(tmp_path / "b.safetensors", train_prior=PRIOR, default_post=DEFAULT_POST),
                   "--name", "other", "--trained-on", "x", "--out", other) == 0
    assert package(run, "--name", "new", "--trained-on", "x", "--out", other) == 0
    assert "default_post" not in read_config(other).extra


@pytest.mark.parametrize("argv, words", [
    (["--default-post", "uniform:-1"], "TAU >= 0"),
    (["--default-post", "sometimes"], "expected train, uniform"),
    (["--default-post", "uniform:0.25"], "needs the training prior"),    # the model carries no train_prior
])
def test_bad_default_post_is_one_error_line_and_writes_nothing(tmp_path, capsys, argv, words):
    src = model_with(tmp_path / "src.safetensors")
    out = tmp_path / "pkg.safetensors"
    assert package(src, "--name", "pkg", "--trained-on", "x", "--out", out, *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and not out.exists()
