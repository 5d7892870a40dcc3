"""Which weights a model is has one answer (vrfer.fingerprint): the same from the model in memory, its .safetensors
file, the ONNX files exported from it, the shipped int8 graph, profiles and serve's version."""

from __future__ import annotations

import torch

from vrfer.fingerprint import MODEL_SHA256_KEY, model_fingerprint, weights_fingerprint
from vrfer.inference.loader import resolve
from vrfer.models import create_model, save_model
from vrfer.models.registry import bundled_models, pretrained_path
from vrfer.inference.onnx_backend import read_metadata


def test_the_file_and_the_model_loaded_from_it_give_one_fingerprint(tmp_path):
    model = create_model("vrfer-cnn-small", pretrained=False)
    save_model(model, tmp_path / "m.safetensors")
    save_model(model, tmp_path / "half.safetensors", half=True)
    assert weights_fingerprint(tmp_path / "m.safetensors") == model_fingerprint(model)
    # a float16 file is the float32 weights it loads into
    assert weights_fingerprint(tmp_path / "half.safetensors") == model_fingerprint(create_model(str(tmp_path / "half.safetensors")))


def test_metadata_keeps_the_fingerprint_and_new_weights_change_it(tmp_path):
    from dataclasses import replace
    model = create_model("vrfer-cnn-small", pretrained=False)
    save_model(model, tmp_path / "a.safetensors")
    save_model(model, tmp_path / "renamed.safetensors", cfg=replace(model.cfg, name="another-name"))
    assert weights_fingerprint(tmp_path / "renamed.safetensors") == weights_fingerprint(tmp_path / "a.safetensors")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(model) != weights_fingerprint(tmp_path / "a.safetensors")


def test_bundled_model_its_int8_graph_and_its_version_agree():
    name = "vrfer-lower"
    weights = pretrained_path(bundled_models()[name].weights)
    fp = weights_fingerprint(weights)
    assert read_metadata(pretrained_path(f"{name}-int8.onnx"))[MODEL_SHA256_KEY] == fp
    src = resolve(name)
    assert src.fingerprint == fp and src.version == fp[:12]
    assert resolve(name, "torch").fingerprint == fp


def test_an_exported_file_and_a_model_object_report_the_same_version(tmp_path):
    from vrfer.export import export_model
    model = create_model("vrfer-cnn-small", pretrained=False)
    onnx_file = export_model(model, tmp_path / "m.onnx", check=False).onnx
    assert resolve(str(onnx_file)).version == resolve(model).version == model_fingerprint(model)[:12]
