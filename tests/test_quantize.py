"""Specification of the int8 classifier (vrfer.export.int8): made from any model by one command, shipped for
the default model and used only with the weights it was made from, and answering like the float32 model on
real FER+ faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fakedata import make_rows, write_folders

from vrfer.cli import main
from vrfer.inference.onnx_backend import OnnxClassifier
from vrfer.export.onnx import pinned_crop
from vrfer.inference.onnx_backend import bundled_int8, matches_weights, quantization_info

REGENERATE = ("vrfer export --model vrfer-lower --format onnx --quantize int8 --int8-data ferplus=../shared/data/ferplus "
              "--out src/vrfer/pretrained/vrfer-lower-int8.onnx")


@pytest.fixture(scope="module")
def fresh_model(tmp_path_factory) -> str:
    from vrfer.models.registry import create_model, save_model
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), path)
    return str(path)


def test_the_shipped_int8_graph_was_made_from_the_shipped_weights():
    assert bundled_int8("vrfer-lower") is not None, (
        "src/vrfer/pretrained/vrfer-lower-int8.onnx is missing or was made from other weights than the shipped "
        f"vrfer-lower.safetensors: regenerate it with\n    {REGENERATE}")


def test_the_default_recognizer_uses_the_int8_graph_only_where_one_ships():
    from vrfer.recognizer import Recognizer
    fast = Recognizer(face="none").pipeline.classifier
    assert isinstance(fast, OnnxClassifier) and fast.path.endswith("vrfer-lower-int8.onnx")
    assert bundled_int8("vrfer-full") is None                         # no int8 file: PyTorch float32
    assert type(Recognizer("vrfer-full", face="none").pipeline.classifier).__name__ == "TorchClassifier"
    assert type(Recognizer(face="none", backend="torch").pipeline.classifier).__name__ == "TorchClassifier"


def test_export_makes_an_int8_model_from_any_model_in_one_command(fresh_model, tmp_path, capsys, private_cache):
    from vrfer.models import create_model
    from vrfer.fingerprint import MODEL_SHA256_KEY, weights_fingerprint
    from vrfer.inference.onnx_backend import read_metadata
    root = write_folders(tmp_path / "fer", make_rows(n_per_split=40))
    out = tmp_path / "m-int8.onnx"
    rc = main(["export", "--model", fresh_model, "--format", "onnx", "--quantize", "int8",
               "--int8-data", f"ferplus={root}", "--out", str(out), "--no-check"])
    assert rc == 0 and "int8" in capsys.readouterr().out
    info = quantization_info(out)
    assert info["dtype"] == "int8" and read_metadata(out)[MODEL_SHA256_KEY] == weights_fingerprint(fresh_model)
    assert matches_weights(out, fresh_model)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["quantization"]["format"] == "QDQ"
    clf = OnnxClassifier(str(out))
    assert clf.cfg == pinned_crop(create_model(fresh_model).cfg)                 # same preprocessing, from the metadata
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    p = clf.predict_proba(faces)
    assert p.shape == (5, 8) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int8"], "--int8-data"),
    (["--quantize", "int8", "--int8-data", "affectnet=x"], "ferplus=DIR"),
    (["--int8-data", "ferplus=x"], "--quantize int8"),
])
def test_bad_quantisation_arguments_give_one_error_line(fresh_model, tmp_path, capsys, args, message):
    rc = main(["export", "--model", fresh_model, "--out", str(tmp_path / "x.onnx"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_int8_model_answers_like_the_float32_model_on_real_ferplus(ferplus_root):
    from vrfer.datasets.ferplus import load_ferplus
    from vrfer.inference.torch_backend import TorchClassifier
    from vrfer.models import create_model
    from vrfer.occlusion import occlude_upper
    test = load_ferplus(ferplus_root, "test", "majority")
    model = create_model("vrfer-lower")
    faces = occlude_upper(test.images[:600], model.cfg.occlusion)
    p32 = TorchClassifier(model).predict_proba(faces)
    p8 = OnnxClassifier(str(bundled_int8("vrfer-lower"))).predict_proba(faces)
    labels = test.labels[:600]
    acc_gap = abs((p8.argmax(1) == labels).mean() - (p32.argmax(1) == labels).mean())
    # the same figures on every x86 CPU: with 7-bit weights the integer sums are exact with or without VNNI
    # (measured on all 3,137, AVX2-only EPYC: agreement 99.46%, largest probability gap 0.058)
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.98
    assert acc_gap <= 0.01
    assert np.abs(p8 - p32).max() < 0.15


def test_the_int8_weights_use_seven_bits_so_cpus_without_vnni_do_not_saturate(fresh_model, tmp_path, private_cache):
    # AVX2's u8 x s8 pair products (vpmaddubsw) sum into int16: 2 x 255 x 127 overflows it, 2 x 255 x 64 does not.
    # Full 8-bit weights cost 1.5 points and 5% of the answers on such a CPU (docs/RESULTS.md, "int8 classifier").
    import onnx
    from onnx import numpy_helper
    root = write_folders(tmp_path / "fer", make_rows(n_per_split=40))
    out = tmp_path / "m-int8.onnx"
    assert main(["export", "--model", fresh_model, "--format", "onnx", "--quantize", "int8",
                 "--int8-data", f"ferplus={root}", "--out", str(out), "--no-check"]) == 0
    for path in (out, bundled_int8("vrfer-lower")):
        weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
        assert weights, path
        assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64, path
