"""One front door for models (vrfer.inference.loader.resolve, vrfer.models.create_model): every entry point of the Python API
takes a trained model's name, file or run folder, or a model object, and refuses an architecture name (random
weights) with one sentence that says how to ask for random weights, instead of answering with them."""

from __future__ import annotations

import numpy as np
import pytest

import vrfer
from vrfer.errors import VrferError
from vrfer.models import create_model

ARCH = "vrfer-cnn-small"      # an architecture: no trained weights behind the name


def _faces():
    from vrfer.datasets.base import FaceSet
    return FaceSet(np.zeros((2, 48, 48), np.uint8), np.eye(8, dtype=np.float32)[:2], np.array([0, 1]), ["a", "b"])


def _entry_points(tmp_path):
    from vrfer.personal.adapt import adapt_folder
    from vrfer.evaluate import evaluate, evaluate_folder
    from vrfer.personal.evaluate_personal import evaluate_personal
    from vrfer.explain import explain
    from vrfer.export.onnx import export_onnx
    faces = _faces()
    return {
        "Recognizer": lambda m: vrfer.Recognizer(m, face="none"),
        "load_model": lambda m: vrfer.load_model(m),
        "create_model": lambda m: create_model(m),
        "evaluate": lambda m: evaluate(m, faces),
        "evaluate_folder": lambda m: evaluate_folder(m, tmp_path),
        "evaluate_personal": lambda m: evaluate_personal(m, tmp_path),
        "adapt_folder": lambda m: adapt_folder(m, tmp_path),
        "explain": lambda m: explain(m, np.zeros((48, 48), np.uint8)),
        "export_onnx": lambda m: export_onnx(m, tmp_path / "m.onnx"),
    }


@pytest.mark.parametrize("entry", ["Recognizer", "load_model", "create_model", "evaluate", "evaluate_folder",
                                   "evaluate_personal", "adapt_folder", "explain", "export_onnx"])
def test_an_architecture_name_is_refused_with_the_way_to_ask_for_random_weights(entry, tmp_path):
    with pytest.raises(VrferError) as e:
        _entry_points(tmp_path)[entry](ARCH)
    msg = str(e.value)
    assert "untrained (random) weights" in msg and f"create_model({ARCH!r}, pretrained=False)" in msg
    assert "\n" not in msg


def test_random_weights_only_when_asked_and_then_every_entry_point_takes_the_object():
    fresh = create_model(ARCH, pretrained=False)
    assert vrfer.load_model(fresh).module is fresh
    from vrfer.evaluate import evaluate
    assert 0.0 <= evaluate(fresh, _faces())["accuracy"] <= 1.0
    with pytest.raises(VrferError, match="pretrained=False"):
        create_model(ARCH, pretrained=True)


def test_a_bundled_name_gives_its_trained_weights_through_every_door():
    a, b = create_model("vrfer-lower"), vrfer.load_model("vrfer-lower", "torch").torch_model()
    assert vrfer.model_fingerprint(a) == vrfer.model_fingerprint(b) == vrfer.load_model("vrfer-lower").fingerprint
