"""ONNX export and the onnxruntime backend: metadata round trip, agreement with PyTorch, the CLI."""

import json

import numpy as np
import pytest
import torch
from conftest import FER_TEST, need
from PIL import Image, ImageDraw

from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.inference.torch_backend import TorchClassifier
from vrfer.inference.loader import load_classifier
from vrfer.models import create_model, save_model
from vrfer.inference.onnx_backend import OnnxClassifier, read_metadata
from vrfer.export.onnx import DEFAULT_OPSET, export_onnx, pinned_crop

TOL = 1e-4


def generated_faces(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """Cartoon faces (head, eyes, brows, nose, a mouth from frown to open smile) with noise, uint8 (n, size, size)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = 4 * size  # draw large, shrink: smooth edges like a photo
        im = Image.new("L", (s, s), int(rng.integers(20, 90)))
        d = ImageDraw.Draw(im)
        skin = int(rng.integers(140, 220))
        d.ellipse([s * .15, s * .05, s * .85, s * 1.0], fill=skin)
        for cx in (.35, .65):
            d.ellipse([s * (cx - .06), s * .36, s * (cx + .06), s * .44], fill=40)
            d.line([s * (cx - .08), s * .30, s * (cx + .08), s * (.30 + rng.uniform(-.04, .04))], fill=60, width=s // 40)
        d.line([s * .5, s * .45, s * .47, s * .62, s * .53, s * .62], fill=skin - 50, width=s // 60)
        curve = rng.uniform(-.08, .1)
        box = [s * .33, s * (.70 - abs(curve)), s * .67, s * (.78 + abs(curve))]
        if curve > 0:
            d.chord(box, 0, 180, fill=30 if rng.random() < .5 else 230)
        else:
            d.arc(box, 180, 360, fill=30, width=s // 40)
        a = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) + rng.normal(0, 6, (size, size))
        out.append(np.clip(a, 0, 255).astype(np.uint8))
    return np.stack(out)


def real_faces(n: int) -> np.ndarray:
    files = sorted(FER_TEST.glob("*.png"))[:n]
    need(len(files) == n, f"{n} real FER+ test faces not present at {FER_TEST} (set VRFER_SHARED to the folder "
                          "holding data/ferplus); the generated-face tests cover the same code")
    return np.stack([np.asarray(Image.open(f).convert("L")) for f in files])


def trained_like(arch: str, mode: str, seed: int = 0):
    """A fresh model with random BatchNorm statistics and a wide classifier, so that BN folding and
    the softmax are really exercised (fresh weights give near-uniform probabilities)."""
    torch.manual_seed(seed)
    model = create_model(arch, pretrained=False, input_mode=mode)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        model.classifier.weight.mul_(20)
    return model.eval()


@pytest.fixture
def saved(tmp_path, private_cache):
    def make(mode="visible-half", arch="vrfer-cnn-small", name="m.safetensors", seed=0):
        path = tmp_path / name
        save_model(trained_like(arch, mode, seed), path)
        return path
    return make


# ------------------------------------------------------------------------------- metadata

@pytest.mark.parametrize("mode", ["visible-half", "full"])
def test_metadata_round_trips_into_the_config(tmp_path, mode):
    model = trained_like("vrfer-cnn-small", mode)
    path = export_onnx(model, tmp_path / "m.onnx")
    clf = OnnxClassifier(str(path))
    assert clf.cfg == pinned_crop(model.cfg)     # the config, its crop written out
    meta = read_metadata(path)
    pre = json.loads(meta["vrfer_preprocessing"])
    assert pre["classes"] == list(model.cfg.classes)
    assert meta["classes"].split(",") == list(model.cfg.classes)
    assert pre["input_mode"] == mode and pre["image_size"] == 48 and pre["occlusion"] == 0.5
    assert pre["mean"] == [128.0] and pre["std"] == [64.0] and pre["layout"] == "NCHW"
    assert pre["input_shape"] == ["batch", *model.cfg.input_shape]
    assert pre["rows"] == ([24, 48] if mode == "visible-half" else [0, 48])
    assert "minus 128, divided by 64" in pre["formula"]
    assert ("rows [24:48]" in pre["formula"]) == (mode == "visible-half")

    import onnx
    m = onnx.load(str(path))
    assert m.opset_import[0].version == DEFAULT_OPSET == 15
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(model.cfg.input_shape)
    # the existing outputs keep their names and order; the representation comes third
    assert [o.name for o in m.graph.output] == ["logits", "probs", "representation"]
    rep = m.graph.output[2].type.tensor_type
    assert rep.elem_type == onnx.TensorProto.FLOAT
    assert rep.shape.dim[0].dim_param == "batch" and rep.shape.dim[1].dim_value == model.classifier.in_features
    assert not [n for n in m.graph.node if n.op_type == "BatchNormalization"]  # folded into Conv


def test_the_file_says_what_the_representation_is_and_which_weights_it_holds(tmp_path):
    from vrfer.personal.calibration import PROFILE_FORMULA
    from vrfer.fingerprint import model_fingerprint
    model = trained_like("vrfer-cnn-small", "visible-half")
    meta = read_metadata(export_onnx(model, tmp_path / "m.onnx"))
    assert meta["vrfer_model_sha256"] == model_fingerprint(model)     # what a profile's model_sha256 must be
    pre = json.loads(meta["vrfer_preprocessing"])
    assert pre["output_names"] == ["logits", "probs", "representation"]
    assert pre["representation"]["shape"] == ["batch", model.classifier.in_features]
    assert "last layer" in pre["representation"]["meaning"]
    assert pre["calibration"]["formula"].startswith(PROFILE_FORMULA)
    assert "vrfer_model_sha256" in pre["calibration"]["check"]


def test_the_representation_output_matches_pytorch(saved):
    from vrfer.inference.representation import logits_and_features
    path = saved("visible-half")
    crops = generated_faces(7)
    clf = load_classifier(str(path), "onnx", threads=1)
    assert clf.has_representation and clf.model_sha256
    lo, fo = clf.logits_and_features(crops)
    model = create_model(str(path))
    d = model.classifier.in_features
    lt, ft = logits_and_features(model, crops)
    assert fo.shape == ft.shape == (7, d) and fo.dtype == lo.dtype == np.float32
    assert np.abs(fo - ft).max() < TOL and np.abs(lo - lt).max() < TOL
    # the last layer of the model, applied to the representation, gives the logits: it is that layer's input
    w, b = model.classifier.weight.detach().numpy(), model.classifier.bias.detach().numpy()
    assert np.abs(fo @ w.T + b - lo).max() < 1e-3
    empty = clf.logits_and_features(np.zeros((0, 48, 48), np.uint8))
    assert empty[0].shape == (0, 8) and empty[1].shape == (0, d)


# ------------------------------------------------------------------------------- agreement

def _agree(path_or_model, crops, batch_sizes=(1, 7)):
    model = path_or_model if isinstance(path_or_model, torch.nn.Module) else create_model(str(path_or_model))
    onnx_clf = load_classifier(path_or_model, "onnx", threads=1)
    torch_clf = TorchClassifier(model)
    for bs in batch_sizes:
        x = crops[:bs]
        p_onnx, p_torch = onnx_clf.predict_proba(x), torch_clf.predict_proba(x)
        assert p_onnx.shape == p_torch.shape == (bs, 8) and p_onnx.dtype == np.float32
        assert np.allclose(p_onnx.sum(1), 1, atol=1e-5)
        assert np.abs(p_onnx - p_torch).max() < TOL, f"batch {bs}"
    return p_torch


@pytest.mark.parametrize("mode", ["visible-half", "full", "upper-occluded"])
def test_onnx_and_pytorch_agree_on_generated_faces(saved, mode):
    p = _agree(saved(mode), generated_faces(16), batch_sizes=(1, 16))
    assert p.max() > 0.3  # a spread-out distribution, not a uniform one: the check means something


def test_onnx_and_pytorch_agree_on_crops_of_other_sizes(saved):
    _agree(saved("visible-half"), generated_faces(5, size=100, seed=1), batch_sizes=(1, 5))


@pytest.mark.parametrize("mode", ["visible-half", "full"])
def test_onnx_and_pytorch_agree_on_real_faces(saved, mode):
    _agree(saved(mode), real_faces(64), batch_sizes=(1, 64))


def test_tta_flip_matches_pytorch(saved):
    path = saved("visible-half")
    faces = generated_faces(4)
    p_onnx = load_classifier(str(path), "onnx", tta_flip=True).predict_proba(faces)
    p_torch = TorchClassifier(create_model(str(path)), tta_flip=True).predict_proba(faces)
    assert np.abs(p_onnx - p_torch).max() < TOL


def test_model_objects_and_empty_input():
    model = trained_like("vrfer-cnn-small", "visible-half")
    clf = OnnxClassifier(model)
    assert clf.cfg == pinned_crop(model.cfg)
    assert clf.predict_proba(np.zeros((0, 48, 48), np.uint8)).shape == (0, 8)
    assert clf.predict_proba(generated_faces(1)[0]).shape == (1, 8)  # one (H, W) crop


# ------------------------------------------------------------------------------- cache

def test_safetensors_is_exported_once_to_the_cache_keyed_by_its_weights(saved, private_cache):
    path = saved("visible-half")
    first = load_classifier(str(path), "onnx")
    files = list((private_cache / "onnx").glob("*.onnx"))
    assert len(files) == 1 and first.path == str(files[0])
    stamp = files[0].stat().st_mtime_ns
    again = load_classifier(str(path), "onnx")
    assert again.path == first.path and files[0].stat().st_mtime_ns == stamp  # reused, not re-exported
    save_model(trained_like("vrfer-cnn-small", "visible-half", seed=1), path)  # new weights, same file name
    third = load_classifier(str(path), "onnx")
    assert third.path != first.path and len(list((private_cache / "onnx").glob("*.onnx"))) == 2


def test_bad_sources_raise_clean_errors(tmp_path, private_cache):
    with pytest.raises(VrferError, match="not found"):
        OnnxClassifier(str(tmp_path / "missing.onnx"))
    with pytest.raises(VrferError, match="unknown model"):
        load_classifier("no-such-model", "onnx")
    with pytest.raises(VrferError, match="an .onnx file or a model object"):
        OnnxClassifier("vrfer-lower")          # names are read by vrfer.inference.loader, not by the classifier
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VrferError):
        OnnxClassifier(str(bad))


# ------------------------------------------------------------------------------- CLI

def test_cli_export_writes_the_model_and_its_card(saved, tmp_path, capsys):
    src = saved("visible-half")
    out = tmp_path / "out" / "lower.onnx"
    assert main(["export", "--model", str(src), "--format", "onnx", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["opset"] == 15 and card["classes"] == list(create_model(str(src)).cfg.classes)
    assert card["inputs"][0]["shape"] == ["batch", 1, 24, 48]
    assert card["preprocessing"]["rows"] == [24, 48]
    assert card["check"]["max_abs_diff_probs_vs_pytorch"] < TOL
    md = out.with_suffix(".md").read_text()
    assert "Unity" in md and "new Tensor<float>(new TensorShape(1, 1, 24, 48)" in md
    # the representation output and how a profile is applied, for people and in C#
    from vrfer.fingerprint import model_fingerprint
    assert [o["name"] for o in card["outputs"]] == ["logits", "probs", "representation"]
    assert card["model_sha256"] == model_fingerprint(create_model(str(src)))
    assert "vrfer_model_sha256" in card["metadata_keys"] and "formula" in card["calibration"]
    assert "## Calibration to a person" in md and "UseProfile(string json)" in md
    assert f'ModelSha256 = "{card["model_sha256"]}"' in md and 'PeekOutput("representation")' in md
    faces = generated_faces(3)
    p = OnnxClassifier(str(out)).predict_proba(faces)
    assert np.abs(p - TorchClassifier(create_model(str(src))).predict_proba(faces)).max() < TOL


def test_cli_export_opset_option(saved, tmp_path):
    out = tmp_path / "m13.onnx"
    assert main(["export", "--model", str(saved()), "--out", str(out), "--opset", "13", "--no-check"]) == 0
    import onnx
    assert onnx.load(str(out)).opset_import[0].version == 13


@pytest.mark.parametrize("args", [["--model", "no-such-model"], ["--model", "missing.safetensors"],
                                  ["--model", "vrfer-cnn-small", "--opset", "99"]])
def test_cli_export_bad_arguments_give_one_error_line(tmp_path, capsys, args):
    out = tmp_path / "x.onnx"
    assert main(["export", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vrfer: error:")
    assert not out.exists()


def test_an_unexportable_model_gives_one_clean_error(tmp_path, capfd):
    class Odd(torch.nn.Module):  # adaptive pooling to a grid that does not divide the input: no ONNX op
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d((5, 5))
            self.fc = torch.nn.Linear(100, 8)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    model = Odd()
    model.cfg = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").cfg
    with pytest.raises(VrferError, match="ONNX export of 'vrfer-cnn-small'.*failed") as e:
        export_onnx(model, tmp_path / "odd.onnx")
    assert "\n" not in str(e.value) and len(str(e.value)) < 500
    out, err = capfd.readouterr()
    assert "graph" not in out and "graph" not in err  # the exporter's graph dump is kept off the terminal
    assert not (tmp_path / "odd.onnx").exists()
