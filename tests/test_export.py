"""vrfer.export and vrfer.export.modelcard as a library: the ONNX file and its card, without the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vrfer.errors import VrferError
from vrfer.export import FORMATS, MAX_FLOAT_DIFF, export_model
from vrfer.export.modelcard import card_markdown, unity_csharp
from vrfer.models import create_model
from vrfer.inference.postprocess import PostProcess

PRIOR = [0.34, 0.27, 0.12, 0.14, 0.09, 0.01, 0.02, 0.01]


def model(**extra):
    torch.manual_seed(0)
    m = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half")
    if extra:
        from dataclasses import replace
        m.cfg = replace(m.cfg, extra=extra)
    return m


def test_export_model_writes_the_file_and_its_card(tmp_path):
    m = model()
    done = export_model(m, tmp_path / "m.onnx")
    assert done.onnx.is_file() and done.card_json == tmp_path / "m.json" and done.card_md == tmp_path / "m.md"
    assert json.loads(done.card_json.read_text()) == done.card
    assert done.card_md.read_text() == card_markdown(m.cfg, done.card)
    assert done.card["opset"] == 15 and done.card["check"]["max_abs_diff_probs_vs_pytorch"] < MAX_FLOAT_DIFF
    assert "check" not in export_model(m, tmp_path / "n.onnx", opset=13, check=False).card


def test_the_csharp_applies_the_post_processing_the_file_records(tmp_path):
    m = model(train_prior=PRIOR)
    plain = export_model(m, tmp_path / "plain.onnx", check=False).card
    assert "// 5." not in unity_csharp(m.cfg, plain)
    post = PostProcess(m.cfg, "uniform", 0.5, "neutral,happiness,surprise")
    card = export_model(m, tmp_path / "post.onnx", post=post, check=False).card
    cs = unity_csharp(m.cfg, card)
    assert "bool[] Keep = { true, true, true, false, false, false, false, false };" in cs
    assert f"{0.5 * (math.log(1 / 8) - math.log(PRIOR[0] / sum(PRIOR))):.6f}f" in cs
    assert cs.startswith("```csharp") and cs.count("{") == cs.count("}")


def test_an_exported_file_keeps_the_crop_it_was_exported_with():
    # the file's config spells out its crop geometry, so a later change of vrfer's default crop does not change
    # how vrfer crops for it; a file written before configs carried the crop keeps the rule its spec states
    from dataclasses import replace

    from vrfer.inference.onnx_backend import config_from_metadata
    from vrfer.export.onnx import onnx_metadata
    m = model()
    meta = onnx_metadata(replace(m.cfg, crop={"rule": "box"}), opset=15)
    pinned = json.loads(meta["vrfer_config"])["crop"]
    assert pinned["rule"] == "box" and "kp_side_per_width" in pinned and "side_per_width" in pinned
    assert config_from_metadata(meta).crop_geometry.rule == "box"
    old = dict(meta, vrfer_config=json.dumps({k: v for k, v in json.loads(meta["vrfer_config"]).items() if k != "crop"}))
    assert config_from_metadata(old).crop_geometry.rule == "box"
    spec = json.loads(meta["vrfer_preprocessing"])
    spec["square"]["detect"]["rule"] = "keypoints"
    assert config_from_metadata(dict(old, vrfer_preprocessing=json.dumps(spec))).crop_geometry.rule == "keypoints"


def test_an_export_format_is_one_entry_in_the_registry(tmp_path, monkeypatch):
    import vrfer.export as ex
    written = []
    monkeypatch.setitem(ex.FORMATS, "npz", ex.Format(".npz", lambda model, out, **kw: written.append((out, kw))))
    model = create_model("vrfer-cnn-small", pretrained=False)
    ex.export(model, tmp_path / "m.npz", "npz", opset=13)
    assert written == [(tmp_path / "m.npz", {"opset": 13})]
    with pytest.raises(VrferError, match="a npz file should end in .npz"):
        ex.export(model, tmp_path / "m.onnx", "npz")
    with pytest.raises(VrferError, match="unknown export format 'tflite'; expected onnx, npz"):
        ex.export(model, tmp_path / "m.tflite", "tflite")


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_registered_export_format_writes_its_file_through_the_command(name, tmp_path, capsys):
    from vrfer.cli import main
    from vrfer.models import save_model
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False), model)
    out = tmp_path / f"m{FORMATS[name].suffix}"
    assert main(["export", "--model", str(model), "--format", name, "--out", str(out), "--no-check"]) == 0
    assert out.is_file() and out.stat().st_size > 0


def test_a_toy_format_registered_by_its_writer_is_offered_by_the_command(tmp_path, monkeypatch, capsys):
    import numpy as np

    import vrfer.export as ex
    from vrfer.cli import main
    from vrfer.models import save_model

    def write_npz(model, out, **kw):
        np.savez(out, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(ex, "FORMATS", dict(ex.FORMATS))
    ex.register_format("npz", ".npz", write_npz)
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False), model)
    assert main(["export", "--model", str(model), "--format", "npz", "--out", str(tmp_path / "m.npz"),
                 "--no-check"]) == 0
    assert sorted(np.load(tmp_path / "m.npz").files) == sorted(create_model("vrfer-cnn-small",
                                                                            pretrained=False).state_dict())
