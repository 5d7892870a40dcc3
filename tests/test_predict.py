"""Specification of `vrfer predict` and vrfer.recognizer.Recognizer.

The bundled models are not needed: a fresh (untrained) compact CNN with the visible-half input is
saved to a temporary .safetensors file and passed by path. Its predictions are meaningless; what is
specified here is the pipeline: inputs, faces, output formats, smoothing, and bad input.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FACES_DEV, needs_data
from PIL import Image

from vrfer.classes import CLASSES
from vrfer.cli import main
from vrfer.errors import VrferError

PHOTO = FACES_DEV / "Aaron_Peirsol_0001.jpg"
PHOTO2 = FACES_DEV / "Cameron_Diaz_0001.jpg"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    from vrfer.models.registry import create_model, save_model
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), path)
    return str(path)


def vrfer(capfd, *args) -> tuple[int, str, list[str]]:
    """Run the CLI in-process; return exit code, stdout, and stderr lines (C-level output included)."""
    rc = main(["predict", "--threads", "1", "--no-progress", *map(str, args)])
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    return rc, out, [line for line in err.splitlines() if line.strip()]


def face_image(size=96) -> np.ndarray:
    """A face-like gray picture (for --face none / fixed boxes; detection needs real faces)."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = 200 - 120 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 > 0.16) - 80 * ((abs(y - 0.75) < 0.04) & (abs(x - 0.5) < 0.2))
    return img.astype(np.uint8)


def save(img, path, **kw) -> Path:
    Image.fromarray(img).save(path, **kw)
    return Path(path)


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ faces

def test_face_none_takes_the_whole_image_as_the_face(capfd, model, tmp_path):
    p = save(face_image(), tmp_path / "crop.png")
    rc, out, err = vrfer(capfd, p, "--model", model, "--face", "none", "--json")
    assert rc == 0 and err == []
    [d] = json_lines(out)
    assert d["box"] == [0, 0, 96, 96] and d["frame"] is None and d["source"] == str(p)
    assert list(d["probs"]) == list(CLASSES)
    assert sum(d["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert d["label"] == max(d["probs"], key=d["probs"].get)


def test_a_fixed_region_is_the_face_in_every_image(capfd, model, tmp_path):
    big = np.zeros((200, 300), np.uint8)
    big[50:146, 100:196] = face_image()
    p = save(big, tmp_path / "rig.png")
    rc, out, _ = vrfer(capfd, p, "--model", model, "--face", "100,50,96,96", "--json")
    assert rc == 0
    assert json_lines(out)[0]["box"] == [100, 50, 96, 96]


def test_a_fixed_region_and_face_none_give_the_same_prediction_for_the_same_pixels(model):
    from vrfer.recognizer import Recognizer
    big = np.zeros((200, 300), np.uint8)
    big[50:146, 100:196] = face_image()
    fixed = Recognizer(model, face=(100, 50, 96, 96)).predict(big)[0]
    whole = Recognizer(model, face="none").predict(face_image())[0]
    assert fixed.probs == pytest.approx(whole.probs, abs=1e-6)


@needs_data(PHOTO)
def test_detect_finds_the_face_in_a_real_photo_and_frames_it(capfd, model):
    rc, out, err = vrfer(capfd, PHOTO, "--model", model, "--json")
    assert rc == 0 and err == []
    [d] = json_lines(out)
    x, y, w, h = d["box"]
    assert w > 150 and h > 150 and d["face_score"] >= 0.5   # 350x350 photo filled by the face


@needs_data(PHOTO)
def test_detect_finds_the_face_behind_a_synthetic_headset(model):
    import cv2
    from vrfer.occlusion import draw_headset
    from vrfer.recognizer import Recognizer
    rec = Recognizer(model)
    img = cv2.imread(str(PHOTO))
    clean = rec.predict(img)[0]
    behind = rec.predict(draw_headset(img, clean.box))
    from vrfer.faces import iou
    assert behind and iou(behind[0].box, clean.box) > 0.5


@needs_data(PHOTO)
def test_the_api_takes_a_path_a_numpy_array_or_a_pil_image_alike(model):
    import cv2
    from vrfer.recognizer import Recognizer
    rec = Recognizer(model)
    by_path = rec.predict(str(PHOTO))[0]
    by_array = rec.predict(cv2.imread(str(PHOTO)))[0]
    by_pil = rec.predict(Image.open(PHOTO))[0]
    assert by_path.source == str(PHOTO) and by_array.source == ""
    assert by_path.box == by_array.box == by_pil.box
    assert by_path.probs == pytest.approx(by_array.probs, abs=1e-5)
    d = by_path.to_dict()
    assert set(d) >= {"source", "frame", "box", "label", "score", "probs", "held"} and "smoothed" not in d
    assert d["held"] is False and d["label"] == max(d["probs"], key=d["probs"].get)


# ---------------------------------------------------------------------------------------- formats

def test_default_output_is_a_header_then_one_readable_line_per_face(capfd, model, tmp_path):
    a = save(face_image(), tmp_path / "a.png")
    b = save(face_image(64), tmp_path / "b.png")
    rc, out, _ = vrfer(capfd, a, b, "--model", model, "--face", "none")
    header, *lines = out.splitlines()
    assert header.startswith("# source") and "face box x,y,w,h" in header and "outside" in header
    assert rc == 0 and len(lines) == 2
    assert lines[0].startswith(str(a)) and "[0,0,96,96]" in lines[0]
    assert any(lines[0].split()[2] == c for c in CLASSES)   # file, box, label, ...
    assert "neu " in lines[0] and "con " in lines[0]        # the 8 probabilities


def test_classes_restricts_the_answer_to_a_subset(capfd, model, tmp_path):
    files = [save(np.roll(face_image(), k, axis=1), tmp_path / f"{k}.png") for k in range(0, 40, 8)]
    rc, out, _ = vrfer(capfd, *files, "--model", model, "--face", "none", "--json", "--classes", "fear,contempt")
    rows = json_lines(out)
    assert rc == 0 and len(rows) == 5
    for d in rows:
        assert d["label"] in ("fear", "contempt")
        assert all(v == 0 for c, v in d["probs"].items() if c not in ("fear", "contempt"))
        assert d["probs"]["fear"] + d["probs"]["contempt"] == pytest.approx(1, abs=2e-6)


def test_a_uniform_prior_moves_probability_to_the_rare_classes(capfd, tmp_path):
    from dataclasses import replace

    from vrfer.models.registry import create_model, save_model
    torch.manual_seed(0)
    m = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half")
    prior = [0.349, 0.291, 0.125, 0.121, 0.084, 0.005, 0.021, 0.005]       # FER+ train
    path = tmp_path / "with-prior.safetensors"
    save_model(m, path, cfg=replace(m.cfg, extra={"train_prior": prior}))
    img = save(face_image(), tmp_path / "a.png")
    runs = {}
    for p in ("train", "uniform"):
        rc, out, _ = vrfer(capfd, img, "--model", path, "--face", "none", "--json", "--prior", p)
        assert rc == 0
        runs[p] = json_lines(out)[0]["probs"]
    plain, balanced = runs["train"], runs["uniform"]
    assert balanced["neutral"] < plain["neutral"] and balanced["disgust"] > plain["disgust"]
    ratio = {c: balanced[c] / plain[c] for c in CLASSES}                  # proportional to 1 / training prior
    assert ratio["disgust"] / ratio["neutral"] == pytest.approx(0.349 / 0.005, rel=1e-3)


def test_a_box_reaching_outside_the_image_is_marked_in_the_table(capfd, model, tmp_path):
    a = save(face_image(), tmp_path / "a.png")
    rc, out, _ = vrfer(capfd, a, "--model", model, "--face", "-10,-10,100,100")
    assert rc == 0 and "[-10,-10,100,100]*  " in out
    rc, out, _ = vrfer(capfd, a, "--model", model, "--face", "10,10,50,50")
    assert rc == 0 and "[10,10,50,50]  " in out


def test_csv_has_a_header_and_one_row_per_face_with_the_8_probabilities(capfd, model, tmp_path):
    for i in range(3):
        save(face_image(64 + 8 * i), tmp_path / f"f{i}.png")
    rc, out, _ = vrfer(capfd, tmp_path, "--model", model, "--face", "none", "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rc == 0
    assert rows[0] == ["source", "frame", "x", "y", "w", "h", "label", "score", *CLASSES, "held",
                       "square_x", "square_y", "square_side"]
    assert len(rows) == 4 and all(len(r) == len(rows[0]) for r in rows)
    for r in rows[1:]:
        assert sum(float(v) for v in r[8:16]) == pytest.approx(1.0, abs=1e-3)
        assert r[6] in CLASSES and r[1] == "" and r[16] == "0"
        assert r[17:] == ["0", "0", r[4]]     # --face none: the square the model read is the whole image


def test_folders_are_searched_recursively_for_images_and_videos_only(capfd, model, tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    save(face_image(), tmp_path / "a.png")
    save(face_image(), tmp_path / "sub" / "deeper" / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image, and not named: skipped")
    rc, out, err = vrfer(capfd, tmp_path, "--model", model, "--face", "none", "--json")
    assert rc == 0 and err == []
    assert sorted(Path(d["source"]).name for d in json_lines(out)) == ["a.png", "b.jpg"]


def test_out_writes_annotated_copies_of_photos(capfd, model, tmp_path):
    src = tmp_path / "in"
    (src / "x").mkdir(parents=True)
    save(face_image(), src / "x" / "a.png")
    rc, _, _ = vrfer(capfd, src, "--model", model, "--face", "none", "--out", tmp_path / "out")
    assert rc == 0
    written = np.asarray(Image.open(tmp_path / "out" / "x" / "a.png"))
    assert written.shape == (288, 288, 3)  # small crops are scaled up so that the label can be read
    assert (written[..., 1] > written[..., 0] + 100).any()   # the green box was drawn


def test_samples_run_with_the_samples_flag_and_without_any_path(capfd, model):
    from vrfer.inputs import samples_path
    files = sorted(p for p in samples_path().iterdir() if p.suffix in (".png", ".jpg"))
    assert 6 <= len(files) <= 12
    assert sum(p.stat().st_size for p in samples_path().iterdir()) < 300_000
    for args in (["--samples"], []):
        rc, out, err = vrfer(capfd, *args, "--model", model, "--json")
        sources = [d["source"] for d in json_lines(out)]
        assert rc == 0, err
        assert len(sources) == len(files) and all(s.startswith("samples/") for s in sources)
    assert any("bundled samples" in line for line in err)   # said when no PATH was given


# ------------------------------------------------------------------------------------------- video

def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import cv2
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    vw.release()
    return path


def fer_faces(n: int) -> list[np.ndarray]:
    """n (up to 8) real FER+ faces, 96x96: the samples that ship with vrfer, one per class."""
    import cv2
    from vrfer.inputs import samples_path
    files = sorted(samples_path().glob("fer-*.png"))[:n]
    assert len(files) == n
    return [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (96, 96)) for f in files]


def test_a_video_gives_one_result_per_frame(capfd, model, tmp_path):
    video = write_video(tmp_path / "clip.avi", fer_faces(6))
    rc, out, err = vrfer(capfd, video, "--model", model, "--face", "none", "--json")
    rows = json_lines(out)
    assert rc == 0 and err == []
    assert [d["frame"] for d in rows] == list(range(6))
    assert all(d["source"] == str(video) and "smoothed" not in d for d in rows)


def test_predict_opens_a_video_file_once_for_its_header_and_frames(capfd, model, tmp_path, monkeypatch):
    import cv2
    video = write_video(tmp_path / "clip.avi", fer_faces(3))
    opened, real = [], cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda *args: opened.append(args) or real(*args))
    rc, out, _ = vrfer(capfd, video, "--model", model, "--face", "none", "--json")
    assert rc == 0 and len(json_lines(out)) == 3
    assert opened == [(str(video),)]


def test_smoothing_is_an_exponential_moving_average_of_the_frame_probabilities(capfd, model, tmp_path):
    video = write_video(tmp_path / "clip.avi", fer_faces(8))
    alpha = 0.3   # the weight of the newest frame, as serve's alpha (vrfer.inference.smoothing)
    rc, out, _ = vrfer(capfd, video, "--model", model, "--face", "none", "--json", "--smooth", alpha)
    rows = json_lines(out)
    assert rc == 0 and len(rows) == 8
    p = np.array([[d["probs"][c] for c in CLASSES] for d in rows])
    s = np.array([[d["smoothed"][c] for c in CLASSES] for d in rows])
    assert s[0] == pytest.approx(p[0], abs=1e-5)                     # starts at the first frame
    for t in range(1, 8):                                             # s_t = a p_t + (1 - a) s_{t-1}
        assert s[t] == pytest.approx(alpha * p[t] + (1 - alpha) * s[t - 1], abs=2e-6)
    # one label rule (vrfer.results): label/score are this frame's, smoothed_label the running average's
    assert all(d["label"] == max(d["probs"], key=d["probs"].get) for d in rows)
    assert all(d["smoothed_label"] == max(d["smoothed"], key=d["smoothed"].get) for d in rows)
    assert np.abs(np.diff(s, axis=0)).sum() < np.abs(np.diff(p, axis=0)).sum()  # smoother


def test_smoothed_csv_has_the_8_smoothed_probabilities_and_their_label(capfd, model, tmp_path):
    video = write_video(tmp_path / "clip.avi", fer_faces(3))
    rc, out, _ = vrfer(capfd, video, "--model", model, "--face", "none", "--csv", "--smooth", "0.5",
                       "--max-frames", 2)
    rows = list(csv.reader(io.StringIO(out)))
    assert rc == 0 and len(rows) == 3
    assert rows[0][-13:] == [*(f"smoothed_{c}" for c in CLASSES), "smoothed_label", "held", "square_x", "square_y",
                             "square_side"] and len(rows[0]) == 29
    assert [r[1] for r in rows[1:]] == ["0", "1"]


@needs_data(PHOTO2)
def test_a_video_of_a_real_face_is_detected_and_tracked_in_every_frame(capfd, model, tmp_path):
    import cv2
    face = cv2.imread(str(PHOTO2))
    frame = np.full((360, 480, 3), 90, np.uint8)
    frames = []
    for i in range(5):
        f = frame.copy()
        f[40:290, 80 + 6 * i:330 + 6 * i] = cv2.resize(face, (250, 250))
        frames.append(f)
    video = write_video(tmp_path / "real.avi", frames)
    rc, out, err = vrfer(capfd, video, "--model", model, "--json", "--smooth", "0.5")
    rows = json_lines(out)
    assert rc == 0 and err == []
    assert [d["frame"] for d in rows] == list(range(5))
    xs = [d["box"][0] for d in rows]
    assert xs[-1] > xs[0]                       # the box follows the face to the right


# --------------------------------------------------------------------------------------- bad input

def test_a_file_that_is_not_an_image(capfd, model, tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am text")
    rc, out, err = vrfer(capfd, p, "--model", model, "--face", "none")
    assert rc == 1 and out == ""
    assert err == [f"vrfer: {p}: not an image (unknown or unsupported file format)"]


def test_a_truncated_jpeg(capfd, model, tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    rc, _, err = vrfer(capfd, cut, "--model", model, "--face", "none")
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"vrfer: {cut}: truncated image")


def test_an_empty_file(capfd, model, tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    rc, _, err = vrfer(capfd, p, "--model", model, "--face", "none")
    assert rc == 1 and err == [f"vrfer: {p}: empty file (0 bytes)"]


@pytest.mark.parametrize("kind", ["16-bit", "cmyk", "rgba", "palette"])
def test_16bit_cmyk_rgba_and_palette_images_are_converted_and_predicted(capfd, model, tmp_path, kind):
    face = face_image()
    if kind == "16-bit":
        p = tmp_path / "deep.png"
        Image.fromarray(face.astype(np.uint16) * 257).save(p)
        assert Image.open(p).mode.startswith("I")
    elif kind == "cmyk":
        p = tmp_path / "print.jpg"
        Image.fromarray(face).convert("CMYK").save(p)
        assert Image.open(p).mode == "CMYK"
    elif kind == "rgba":
        p = tmp_path / "alpha.png"
        Image.fromarray(np.dstack([face] * 3 + [np.full_like(face, 255)])).save(p)
        assert Image.open(p).mode == "RGBA"
    else:
        p = tmp_path / "pal.gif"
        Image.fromarray(face).convert("P").save(p)
    rc, out, err = vrfer(capfd, p, "--model", model, "--face", "none", "--json")
    assert rc == 0 and err == []
    assert len(json_lines(out)) == 1


def test_converted_images_give_the_prediction_of_the_8bit_gray_image(model, tmp_path):
    from vrfer.recognizer import Recognizer, load_image
    face = face_image()
    p16 = tmp_path / "deep.png"
    Image.fromarray(face.astype(np.uint16) * 257).save(p16)
    assert (load_image(p16) == face).all()
    rec = Recognizer(model, face="none")
    assert rec.predict(p16)[0].probs == pytest.approx(rec.predict(face)[0].probs, abs=1e-6)


def test_a_1x1_image(capfd, model, tmp_path):
    p = save(np.zeros((1, 1), np.uint8), tmp_path / "dot.png")
    for face in ("none", "detect"):
        rc, _, err = vrfer(capfd, p, "--model", model, "--face", face)
        assert rc == 1 and err == [f"vrfer: {p}: image is 1x1 pixels: too small to hold a face"]


def big_png(path: Path, side: int) -> Path:
    """A valid PNG of side x side black pixels (small on disk: it compresses ~1000:1)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_a_20000x20000_image_is_refused_without_reading_it(capfd, model, tmp_path):
    p = big_png(tmp_path / "huge.png", 20000)
    rc, _, err = vrfer(capfd, p, "--model", model, "--face", "none")
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"vrfer: {p}: image too large") and "megapixels" in err[0]


def test_a_jpeg_over_the_pixel_limit_is_decoded_at_a_reduced_scale(tmp_path):
    from vrfer.recognizer import load_image
    p = tmp_path / "big.jpg"
    Image.fromarray(face_image(400)).save(p)
    assert load_image(p, max_pixels=50_000).shape == (200, 200)
    png = save(face_image(400), tmp_path / "big.png")
    with pytest.raises(VrferError, match="too large"):
        load_image(png, max_pixels=50_000)


def test_a_video_that_cannot_be_opened(capfd, model, tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    rc, out, err = vrfer(capfd, p, "--model", model, "--face", "none")
    assert rc == 1 and out == ""
    assert err == [f"vrfer: {p}: cannot open video (not a video file, damaged, or an unsupported codec)"]


def test_a_camera_that_does_not_exist(capfd, model):
    rc, _, err = vrfer(capfd, "cam:97", "--model", model, "--face", "none")
    assert rc == 1 and err == ["vrfer: cam:97: cannot open camera"]


def test_no_face_found(capfd, model, tmp_path):
    p = save(np.full((240, 320), 128, np.uint8), tmp_path / "wall.png")
    rc, _, err = vrfer(capfd, p, "--model", model)
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"vrfer: {p}: no face found")


def test_one_bad_item_does_not_stop_the_batch_and_the_exit_code_says_so(capfd, model, tmp_path):
    good1 = save(face_image(), tmp_path / "a.png")
    bad = tmp_path / "b.png"
    bad.write_bytes(b"")
    good2 = save(face_image(), tmp_path / "c.png")
    rc, out, err = vrfer(capfd, good1, bad, good2, tmp_path / "missing.png", "--model", model,
                         "--face", "none", "--json")
    assert rc == 1
    assert [Path(d["source"]).name for d in json_lines(out)] == ["a.png", "c.png"]
    assert len(err) == 2 and any("missing.png: file not found" in e for e in err)


@pytest.mark.parametrize("args, message", [
    (["--face", "1,2,3"], "expected x,y,w,h"),
    (["--smooth", "1.5"], "ALPHA must be in (0, 1]"),
    (["--smooth", "0"], "ALPHA must be in (0, 1]"),
    (["--prior", "uniform"], "carries no training prior"),
    (["--classes", "neutral,boredom"], "unknown class 'boredom'"),
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "vrfer-cnn-small"], "untrained"),
])
def test_usage_errors_exit_2_with_one_line(capfd, model, tmp_path, args, message):
    p = save(face_image(), tmp_path / "a.png")
    argv = ["--model", model, *args] if args[0] != "--model" else args
    rc, out, err = vrfer(capfd, p, *argv)
    assert rc == 2 and out == "" and len(err) == 1
    assert err[0].startswith("vrfer: error:") and message in err[0]


def test_a_missing_face_detector_is_a_setup_error_said_once(capfd, model, tmp_path, monkeypatch):
    from vrfer.faces import registry
    monkeypatch.setattr(registry, "_SHARED", {})
    monkeypatch.setenv("VRFER_RETINAFACE_ONNX", str(tmp_path / "nowhere.onnx"))
    a, b = save(face_image(), tmp_path / "a.png"), save(face_image(), tmp_path / "b.png")
    rc, out, err = vrfer(capfd, a, b, "--model", model)
    assert rc == 2 and out == "" and len(err) == 1
    assert "VRFER_RETINAFACE_ONNX" in err[0] and "cannot read" in err[0]


def test_without_model_the_bundled_lower_half_model_answers(capfd):
    """No --model: the bundled vrfer-lower gives the answers (the same as naming it; not vrfer-full's)."""
    runs = {m: vrfer(capfd, "--samples", "--face", "none", "--json", *(["--model", m] if m else []))
            for m in (None, "vrfer-lower", "vrfer-full")}
    assert all(rc == 0 for rc, _, _ in runs.values())
    assert runs[None][1] == runs["vrfer-lower"][1] != runs["vrfer-full"][1]
    from vrfer.recognizer import Recognizer
    assert Recognizer(face="none").cfg.input_mode == "visible-half"
