"""Grad-CAM explanations: heat map shape/range, nothing on the hidden rows, PNGs, the CLI."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FER_TEST, needs_data
from PIL import Image, ImageDraw

from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.explain import explain, panels, render
from vrfer.inference.torch_backend import TorchClassifier
from vrfer.models import create_model, save_model
from vrfer.inference.pipeline import parse_face
from vrfer.inputs import samples_path


def face(size: int = 48, seed: int = 0, smile: bool = True) -> np.ndarray:
    """A cartoon face, uint8 (size, size)."""
    rng = np.random.default_rng(seed)
    s = 4 * size
    im = Image.new("L", (s, s), 50)
    d = ImageDraw.Draw(im)
    d.ellipse([s * .15, s * .05, s * .85, s * 1.0], fill=190)
    for cx in (.35, .65):
        d.ellipse([s * (cx - .06), s * .36, s * (cx + .06), s * .44], fill=40)
    if smile:
        d.chord([s * .33, s * .66, s * .67, s * .86], 0, 180, fill=235)
    else:
        d.arc([s * .33, s * .70, s * .67, s * .80], 180, 360, fill=30, width=s // 40)
    a = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) + rng.normal(0, 5, (size, size))
    return np.clip(a, 0, 255).astype(np.uint8)


def model_for(mode: str, seed: int = 0):
    torch.manual_seed(seed)
    m = create_model("vrfer-cnn-small", pretrained=False, input_mode=mode)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        m.classifier.weight.mul_(20)
    return m.eval()


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(model_for("visible-half"), path)
    return path


# ------------------------------------------------------------------------------- API

@pytest.mark.parametrize("mode", ["visible-half", "upper-occluded", "full"])
@pytest.mark.parametrize("size", [48, 96])
def test_heat_map_shape_range_and_probabilities(mode, size):
    model = model_for(mode)
    crop = face(size)
    heat, probs = explain(model, crop)
    assert heat.shape == (size, size) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert probs.shape == (8,) and probs.sum() == pytest.approx(1, abs=1e-5)
    assert np.abs(probs - TorchClassifier(model).predict_proba(crop[None])[0]).max() < 1e-5
    assert not model.training


@pytest.mark.parametrize("mode", ["visible-half", "upper-occluded"])
@pytest.mark.parametrize("size", [48, 96, 61])
def test_hidden_upper_rows_carry_no_heat(mode, size):
    heat, _ = explain(model_for(mode), face(size))
    top = int(round(24 * size / 48))
    assert np.all(heat[:top] == 0)                  # the model never sees these rows
    assert heat[top:].max() == pytest.approx(1.0)   # all the heat is below


def test_target_class_by_name_or_index():
    model, crop = model_for("visible-half"), face()
    h_name, p = explain(model, crop, target="surprise")
    h_idx, _ = explain(model, crop, target=2)
    assert np.allclose(h_name, h_idx)
    with pytest.raises(VrferError, match="unknown class"):
        explain(model, crop, target="boredom")


def test_overlay_shows_the_hidden_rows_dark_and_uncoloured():
    crop = face()
    cfg = model_for("visible-half").cfg
    heat = np.ones((48, 48), np.float32)  # even a heat map claiming heat up there must not show it
    img, over, top = panels(crop, heat, cfg)
    assert top == over.shape[0] // 2
    hidden, visible = over[:top], over[top:]
    assert np.allclose(hidden[..., 0], hidden[..., 1]) and np.allclose(hidden[..., 1], hidden[..., 2])  # gray
    assert hidden.max() <= 0.25 + 1e-6                                       # and dark
    assert np.abs(visible[..., 0] - visible[..., 2]).max() > 0.2             # the heat is coloured
    assert np.allclose(img[:top], hidden)                                    # same dark part on both panels


def test_png_is_written_and_readable(tmp_path):
    model = model_for("visible-half")
    crop = face()
    heat, probs = explain(model, crop)
    out = tmp_path / "cam.png"
    img = render(crop, heat, probs, model.cfg, out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == img.size
        a = np.asarray(im)
    assert a.shape[0] > 150 and a.shape[1] > 300 and a.std() > 10


def test_face_option_is_read_by_the_pipelines_parser():
    assert parse_face("none") == "none" and parse_face("12,3,40,40") == (12, 3, 40, 40)
    with pytest.raises(VrferError):
        parse_face("12,3,40")


# ------------------------------------------------------------------------------- CLI

def test_cli_writes_one_png_per_image(model_file, tmp_path, capsys):
    files = sorted(samples_path().glob("fer-*.png"))[:3]     # real FER+ faces that ship with vrfer
    assert len(files) == 3
    out = tmp_path / "cams"
    assert main(["explain", *map(str, files), "--out", str(out), "--model", str(model_file)]) == 0
    pngs = sorted(out.glob("*_gradcam.png"))
    assert [p.name for p in pngs] == sorted(f"{f.stem}_gradcam.png" for f in files)
    for p in pngs:
        with Image.open(p) as im:
            im.load()
    assert len(capsys.readouterr().out.strip().splitlines()) == len(files)


def test_cli_json_names_the_class_shown_and_the_predict_probabilities(model_file, tmp_path, capsys):
    import json
    src = tmp_path / "f.png"
    Image.fromarray(face()).save(src)
    out = tmp_path / "cams"
    assert main(["explain", str(src), "--face", "none", "--json", "--target", "anger", "--out", str(out),
                 "--model", str(model_file)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["explained"] == "anger" and d["explained_score"] == d["probs"]["anger"]
    assert Path(d["png"]).is_file() and d["box"] == [0, 0, 48, 48]
    assert main(["predict", str(src), "--face", "none", "--json", "--model", str(model_file)]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["probs"] == pytest.approx(d["probs"], abs=1e-6) and p["label"] == d["label"]


def test_cli_face_box_on_a_larger_picture(model_file, tmp_path):
    photo = np.full((120, 160), 90, np.uint8)
    photo[30:78, 50:98] = face(48)
    src = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(src)
    out = tmp_path / "cams"
    assert main(["explain", str(src), "--face", "50,30,48,48", "--out", str(out), "--model", str(model_file)]) == 0
    assert (out / "photo_gradcam.png").is_file()


@pytest.mark.parametrize("content", [b"this is not an image\n", b""])
def test_cli_non_image_gives_one_error_line(model_file, tmp_path, capsys, content):
    bad = tmp_path / "notes.txt"
    bad.write_bytes(content)
    code = main(["explain", str(bad), "--out", str(tmp_path / "cams"), "--model", str(model_file)])
    assert code == 1   # as vrfer predict: an input that could not be used
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"vrfer: {bad}: ")   # as predict words it
    assert "Traceback" not in err
    assert not (tmp_path / "cams").exists()   # nothing explained: no empty folder left behind


def test_cli_non_image_in_a_subprocess_has_no_traceback(model_file, tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "data.bin"
    bad.write_bytes(os.urandom(64))
    r = subprocess.run([sys.executable, "-m", "vrfer", "explain", str(bad), "--out", str(tmp_path / "o"),
                        "--model", str(model_file)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--face", "1,2"], ["--target", "boredom"], ["--model", "no-such-model"]])
def test_cli_bad_options_give_one_error_line(model_file, tmp_path, capsys, args):
    src = tmp_path / "f.png"
    Image.fromarray(face()).save(src)
    argv = ["explain", str(src), "--out", str(tmp_path / "cams"), "--model", str(model_file), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vrfer: error:")


@needs_data(FER_TEST / "fer0032227.png")
def test_cli_detects_faces_in_a_photo(model_file, tmp_path, capsys):
    src = FER_TEST / "fer0032227.png"        # the detector ships with vrfer: it is not something to skip for
    face_img = np.asarray(Image.open(src).convert("L").resize((192, 192), Image.BICUBIC))
    photo = np.full((300, 400), 120, np.uint8)
    photo[60:252, 100:292] = face_img
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "cams"
    assert main(["explain", str(tmp_path / "photo.png"), "--face", "detect", "--out", str(out),
                 "--model", str(model_file)]) == 0
    assert [p.name for p in out.glob("*.png")] == ["photo_gradcam.png"]
