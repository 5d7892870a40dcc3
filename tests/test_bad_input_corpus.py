"""The bad-input corpus: every command of the command table in docs/USAGE.md, run on every kind of bad input.

Specification (docs/USAGE.md, "Every bad input ..." and `vrfer --help`'s exit codes):
- exit code 1 (done, some inputs unusable) or 2 (stopped), as the exit-code rule says for that case;
- the problem is said on stderr in one line that names the file, row, key or option;
- never a traceback, never vrfer's "internal error" fallback;
- nothing is written that the user did not ask for (the working folder stays empty, outputs only where named).
The inputs are generated here: no real data needed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fakedata import make_rows, write_folders
from PIL import Image

from vrfer.cli import main

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ the corpus

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, side: int) -> Path:
    """A real side x side black PNG (a few hundred KB): the size is in the header, the pixels compress away."""
    comp, parts, row = zlib.compressobj(1), [], b"\0" * (side + 1)
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))
    return path


def face_like(size=96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    img = 200 - 120 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 > 0.16) - 80 * ((abs(y - 0.75) < 0.04) & (abs(x - 0.5) < 0.2))
    return img.astype(np.uint8)


def write_video(path: Path, n: int) -> Path:
    import cv2
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for i in range(n):
        vw.write(cv2.cvtColor(np.roll(face_like(), i, axis=1), cv2.COLOR_GRAY2BGR))
    vw.release()
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    c = {}
    c["empty"] = d / "empty.png"
    c["empty"].write_bytes(b"")
    c["text"] = d / "notes.jpg"
    c["text"].write_text("this is not an image\n")
    good = d / "face.png"
    Image.fromarray(face_like()).save(good)
    c["face"] = good
    c["truncated"] = d / "truncated.png"
    c["truncated"].write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    jpg = d / "face.jpg"
    Image.fromarray(face_like(200)).save(jpg, quality=90)
    c["truncated_jpg"] = d / "truncated.jpg"
    c["truncated_jpg"].write_bytes(jpg.read_bytes()[:600])
    c["noise"] = d / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)).save(c["noise"])
    c["tiny"] = d / "dot.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(c["tiny"])
    c["gray16"] = d / "gray16.png"
    Image.fromarray(face_like().astype(np.uint16) * 257).save(c["gray16"])
    c["cmyk"] = d / "cmyk.jpg"
    Image.fromarray(face_like()).convert("CMYK").save(c["cmyk"])
    c["rgba"] = d / "rgba.png"
    Image.fromarray(face_like()).convert("RGBA").save(c["rgba"])
    c["huge"] = huge_png(d / "huge.png", 15000)          # 225 Mpx: PIL's decompression-bomb error
    c["bomb"] = huge_png(d / "bomb.png", 10000)          # 100 Mpx: PIL only warns; vrfer's limit is 64
    c["video_corrupt"] = d / "corrupt.mp4"
    c["video_corrupt"].write_bytes(os.urandom(4096))
    c["video_empty"] = d / "empty.avi"
    c["video_empty"].write_bytes(b"")
    whole = write_video(d / "whole.avi", 48)
    c["video_truncated"] = d / "truncated.avi"
    c["video_truncated"].write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.55)])
    c["model_text"] = d / "model.safetensors"
    c["model_text"].write_text("not a model")
    c["recipe_toml"] = d / "broken.toml"
    c["recipe_toml"].write_text("model = \n")
    c["recipe_negative_lr"] = d / "negative-lr.toml"                # almost right: valid TOML, known keys
    c["recipe_negative_lr"].write_text('model = "vrfer-cnn-small"\n[optim]\nlr = -0.1\nepochs = 1\n')
    c["recipe_string_number"] = d / "string-number.toml"
    c["recipe_string_number"].write_text('[optim]\nlr = "0.1"\n')
    c["recipe_bad_table"] = d / "bad-table.toml"
    c["recipe_bad_table"].write_text('[optimizer]\nlr = 0.1\n')
    # FER+ in Microsoft's layout, and a copy with one malformed label.csv row and one unreadable image
    fer = write_folders(d / "ferplus", make_rows(n_per_split=16))
    bad = d / "ferplus-bad"
    shutil.copytree(fer, bad)
    for split in ("FER2013Test", "FER2013Valid"):
        with open(bad / split / "label.csv", "a") as f:
            f.write("fer9999999.png,(0, 0, 48, 48),1,2,3\n")
    first = (bad / "FER2013Test" / "label.csv").read_text().splitlines()[0].split(",")[0]
    (bad / "FER2013Test" / first).write_bytes(b"\x89PNG broken")
    c["ferplus"], c["ferplus_bad"], c["broken_png_name"] = fer, bad, first
    only_test = d / "ferplus-test-only"
    shutil.copytree(fer / "FER2013Test", only_test / "FER2013Test")
    c["ferplus_test_only"] = only_test
    # a labelled folder (evaluate --dataset folder): labels.csv with a bad label, a row with too many
    # fields, an unreadable image and an image listed twice among good rows; and one whose only bad item
    # is the image
    labelled = d / "labelled-bad"
    labelled.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(face_like(), 4 * i, axis=1)).save(labelled / f"f{i}.png")
    (labelled / "broken.png").write_bytes(good.read_bytes()[:100])
    (labelled / "labels.csv").write_text("file,label_name\nf0.png,happy\nf1.png,happyish\nf2.png,fear,extra\n"
                                         "broken.png,anger\nf0.png,neutral\n")
    c["labelled_bad"] = labelled
    unreadable = d / "labelled-unreadable"
    shutil.copytree(labelled, unreadable)
    (unreadable / "labels.csv").write_text("file,label\nf0.png,1\nbroken.png,4\n")
    c["labelled_unreadable"] = unreadable
    c["labelled_no_csv"] = d / "labelled-no-csv"
    shutil.copytree(labelled, c["labelled_no_csv"], ignore=shutil.ignore_patterns("labels.csv"))
    c["device"] = Path("/dev/zero")
    c["not_a_dir_file"] = d / "a-file"
    c["not_a_dir_file"].write_text("x")
    return c


# ------------------------------------------------------------------------------------------ running

def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def run(tmp_path, monkeypatch, capfd, corpus):
    """Run the CLI in-process in an empty working folder; return (code, stdout, stderr lines, new paths)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("VRFER_CACHE", str(tmp_path / "cache"))   # the user's cache folder: allowed

    def go(*argv):
        before = tree(work)
        args = [str(corpus[a[1:]]) if isinstance(a, str) and a.startswith("@") else str(a) for a in argv]
        try:
            code = main(args)
        except SystemExit as e:             # argparse stops on a bad option (value out of its declared range)
            code = e.code
        out, err = capfd.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and "internal error" not in err, err
        return code, out, lines, tree(work) - before
    go.work = work
    return go


def one_line(lines, *names):
    """Exactly one line on stderr, and it names each of `names`."""
    assert len(lines) == 1, lines
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


IMAGE_CASES = [  # (corpus key, exit code for predict --face none, words in the message)
    ("empty", 1, "empty file"),
    ("text", 1, "not an image"),
    ("truncated", 1, "truncated"),
    ("truncated_jpg", 1, ""),
    ("tiny", 1, "too small"),
    ("huge", 1, "too large"),
    ("bomb", 1, "too large"),
    ("gray16", 0, None),
    ("cmyk", 0, None),
    ("rgba", 0, None),
]


@pytest.mark.parametrize("key, code, words", IMAGE_CASES)
def test_predict_on_each_image(run, corpus, key, code, words):
    rc, out, err, new = run("predict", f"@{key}", "--face", "none", "--no-progress", "--json")
    assert rc == code and not new
    if code:
        assert out == "" and words in one_line(err, corpus[key].name)
    else:
        assert len(out.splitlines()) == 1 and err == []


@pytest.mark.parametrize("key, code, words", IMAGE_CASES)
def test_explain_on_each_image(run, corpus, key, code, words):
    rc, out, err, new = run("explain", f"@{key}", "--face", "none", "--out", "cams")
    assert rc == code
    if code:
        line = one_line(err, corpus[key].name)
        assert not new                                                 # no empty cams/ left behind
        assert line.startswith(f"vrfer: {corpus[key]}: ")             # worded as predict words it
        if "megapixels" in words or words == "truncated":
            assert words in line
    else:
        assert new == {"cams", f"cams/{corpus[key].stem}_gradcam.png"}


def test_noise_has_no_face(run, corpus):
    rc, out, err, new = run("predict", "@noise")
    assert rc == 1 and "no face found" in one_line(err, corpus["noise"].name) and not new
    rc, out, err, new = run("explain", "@noise", "--out", "cams")
    assert rc == 1 and "no face found" in one_line(err, corpus["noise"].name) and not new


def test_a_batch_goes_on_past_bad_items_and_exits_1(run, corpus):
    rc, out, err, new = run("predict", "@face", "@empty", "@huge", "@face", "--face", "none", "--json")
    assert rc == 1 and len(out.splitlines()) == 2 and len(err) == 2 and not new
    rc, out, err, new = run("explain", "@face", "@huge", "--face", "none", "--out", "cams")
    assert rc == 1 and "too large" in err[0] and "1 of 2 images failed" in err[1] and len(new) == 2


@pytest.mark.parametrize("key, words", [("video_corrupt", "cannot open video"), ("video_empty", "empty")])
def test_predict_on_unreadable_videos(run, corpus, key, words):
    rc, out, err, new = run("predict", f"@{key}", "--face", "none", "--no-progress")
    assert rc == 1 and out == "" and not new
    assert one_line(err, corpus[key].name)


def test_a_truncated_video_says_how_many_frames_were_read_of_how_many(run, corpus):
    rc, out, err, new = run("predict", "@video_truncated", "--face", "none", "--no-progress", "--json")
    frames = len(out.splitlines())
    assert rc == 1 and 0 < frames < 48 and not new
    assert re.search(rf"video ended after {frames} of the 48 frames its header announces", one_line(err, "truncated.avi"))
    # asking for fewer frames than the file still holds is no failure
    rc, out, err, _ = run("predict", "@video_truncated", "--face", "none", "--no-progress", "--json",
                          "--max-frames", "5")
    assert rc == 0 and len(out.splitlines()) == 5 and err == []


def test_predict_out_on_a_video_says_it_annotates_photos_only_and_makes_no_folder(run, corpus):
    rc, out, err, new = run("predict", "@video_truncated", "--face", "none", "--no-progress", "--out", "ann",
                            "--max-frames", "3")
    assert rc == 0 and not new and "annotates photos only" in one_line(err, "truncated.avi")


@pytest.mark.parametrize("argv, code, words", [
    (["--threads", "-1"], 2, "--threads: -1: expected 0 to"),
    (["--threads", "100000"], 2, "--threads: 100000: expected 0 to"),   # was: 100000 threads, a hang
    (["--threads", "two"], 2, "'two' is not a whole number"),
    (["--face", "1,2,3"], 2, "1,2,3"),
    (["--face", "500,500,10,10"], 1, "outside"),
    (["--face", "0,0,1e30,1e30"], 2, "within 16384 pixels"),     # was: OpenCV's multi-line overflow error
    (["--face", "nan,1,2,3"], 2, "nan,1,2,3"),
    (["--max-frames", "1e3"], 2, "--max-frames"),
    (["--smooth", "nan"], 2, "ALPHA"),
    (["--prior-tau", "nan"], 2, "--prior-tau"),
    (["--smooth", "1.5"], 2, "ALPHA"),
    (["--max-frames", "0"], 2, "--max-frames"),
    (["--classes", ""], 2, "no class named"),
    (["--classes", " , "], 2, "no class named"),
    (["--model", "vrfer-cnn"], 2, "untrained"),
    (["--model", "no-such-model"], 2, "no-such-model"),
    (["--model", "@model_text"], 2, "model.safetensors"),
    (["--model", "missing.onnx"], 2, "missing.onnx"),
    (["--model", "m.onnx", "--backend", "torch"], 2, "--backend onnx"),
    (["--out", "/proc/vrfer/x"], 2, "/proc/vrfer/x"),
    (["--out", "@face"], 2, "face.png"),
])
def test_predict_bad_options(run, corpus, argv, code, words):
    rc, out, err, new = run("predict", "@face", "--face", "none", *argv)
    assert rc == code and out == "" and not new
    line = one_line(err, words.replace("@face", ""))
    if "untrained" in words:
        assert "vrfer-lower" in line and "vgg" not in line   # the choices offered are trained models


def test_a_face_box_may_start_with_a_minus_sign_and_keywords_ignore_case(run, corpus):
    rc, out, err, _ = run("predict", "@face", "--face", "-10,-10,100,100", "--json")
    assert rc == 0 and err == []
    rc, out, err, _ = run("explain", "@face", "--face", "-10,-10,100,100", "--out", "cams")
    assert rc == 0 and err == []
    for cmd in (["predict", "@face", "--json"], ["explain", "@face", "--out", "cams2"]):
        rc, _, err, _ = run(*cmd, "--face", "NONE")
        assert rc == 0 and err == []


def test_explain_target_names_the_explained_class(run, corpus):
    rc, out, err, new = run("explain", "@face", "--face", "none", "--target", "anger", "--out", "cams")
    assert rc == 0 and out.split(": ")[1].startswith("anger ")


@pytest.mark.parametrize("argv, words", [
    (["--target", "boredom"], "boredom"),
    (["--face", "1,2"], "1,2"),
    (["--model", "vrfer-cnn"], "untrained"),
    (["--model", "@model_text"], "model.safetensors"),
])
def test_explain_bad_options(run, corpus, argv, words):
    rc, out, err, new = run("explain", "@face", "--out", "cams", *argv)
    assert rc == 2 and not new and words.replace("@model_text", "") in one_line(err)


@pytest.mark.parametrize("out", ["/proc/vrfer/x", "@not_a_dir_file"])
def test_explain_unwritable_out(run, corpus, out):
    rc, _, err, new = run("explain", "@face", "--face", "none", "--out", out)
    assert rc == 2 and not new and one_line(err, out.replace("@not_a_dir_file", "a-file"))


# ------------------------------------------------------------------------------------------ datasets

def test_evaluate_malformed_label_rows_name_the_row_and_skip_bad_counts_them(run, corpus):
    rc, out, err, new = run("evaluate", "--root", "@ferplus_bad", "--json")
    assert rc == 2 and out == "" and not new
    line = one_line(err, "label.csv")
    assert "row" in line and "--skip-bad" in line
    rc, out, err, new = run("evaluate", "--root", "@ferplus_bad", "--skip-bad")
    assert rc == 0 and "skipped" in out and not new


def test_data_summary_malformed_rows_and_skip_bad(run, corpus):
    rc, out, err, new = run("data", "summary", "--dataset", "ferplus", "--root", "@ferplus_bad")
    assert rc == 2 and "--skip-bad" in one_line(err, "label.csv") and not new
    rc, out, err, new = run("data", "summary", "--dataset", "ferplus", "--root", "@ferplus_bad", "--skip-bad")
    assert rc == 0 and "skipped" in out and not new


def test_one_split_folder_is_enough_for_what_reads_only_that_split(run, corpus):
    rc, out, err, _ = run("evaluate", "--root", "@ferplus_test_only", "--split", "test")
    assert rc == 0 and err == []
    rc, out, err, _ = run("data", "summary", "--dataset", "ferplus", "--root", "@ferplus_test_only", "--json")
    assert rc == 0 and list(__import__("json").loads(out)) == ["test"]
    rc, out, err, _ = run("evaluate", "--root", "@ferplus_test_only", "--split", "valid")
    assert rc == 2 and "FER2013Valid" in one_line(err)


@pytest.mark.parametrize("argv, words", [
    (["--model", "vrfer-cnn"], "untrained"),
    (["--model", "@model_text"], "model.safetensors"),
    (["--split", "holdout"], "holdout"),
    (["--root", "/nonexistent/fer"], "/nonexistent/fer"),
    (["--out", "/proc/vrfer/x"], "/proc/vrfer/x"),
    (["--out", "@not_a_dir_file"], "a-file"),
    (["--threads", "100000"], "--threads: 100000"),
])
def test_evaluate_bad_options(run, corpus, argv, words):
    base = ["evaluate", "--root", "@ferplus"]
    rc, out, err, new = run(*base, *argv)
    assert rc == 2 and out == "" and not new and words in one_line(err)


def test_evaluate_writes_a_png_only_where_asked_and_tta_does_not_overwrite(run, corpus):
    rc, _, err, new = run("evaluate", "--root", "@ferplus")
    assert rc == 0 and not new
    rc, _, _, new1 = run("evaluate", "--root", "@ferplus", "--out", "pngs")
    rc, _, _, new2 = run("evaluate", "--root", "@ferplus", "--out", "pngs", "--tta-flip")
    assert len(new1) == 2 and len(new2) == 1 and new1 - {"pngs"} != new2


def test_evaluate_folder_bad_labels_rows_name_the_row_and_skip_bad_counts_them(run, corpus):
    folder = "evaluate", "--dataset", "folder", "--face", "none", "--root"
    rc, out, err, new = run(*folder, "@labelled_bad", "--json")
    assert rc == 2 and out == "" and not new
    assert "--skip-bad" in one_line(err, "labels.csv row 3", "happyish")
    rc, out, err, new = run(*folder, "@labelled_unreadable", "--json")
    assert rc == 2 and out == "" and not new
    assert "--skip-bad" in one_line(err, "labels.csv row 3", "broken.png")
    rc, out, err, new = run(*folder, "@labelled_bad", "--skip-bad", "--json")
    res = __import__("json").loads(out)
    assert rc == 0 and err == [] and not new
    assert res["n"] == 1 and res["skipped"] == {"bad_label": 1, "bad_row": 1, "unreadable_image": 1, "duplicate": 1}
    rc, out, err, new = run(*folder, "@labelled_bad", "--skip-bad")
    assert rc == 0 and "skipped 1: bad_label" in out and "skipped 1: unreadable_image" in out


@pytest.mark.parametrize("argv, words", [
    (["--root", "@labelled_no_csv"], "labels.csv"),
    (["--root", "/nonexistent/faces"], "/nonexistent/faces"),
    (["--root", "@labelled_bad", "--tta-flip"], "--tta-flip"),
    (["--root", "@labelled_bad", "--skip-bad", "--out", "/proc/vrfer/x"], "/proc/vrfer/x"),
    (["--root", "@labelled_bad", "--skip-bad", "--classes", "neutral,boredom"], "boredom"),
])
def test_evaluate_folder_bad_options(run, corpus, argv, words):
    rc, out, err, new = run("evaluate", "--dataset", "folder", "--face", "none", *argv)
    assert rc == 2 and out == "" and not new and words in one_line(err)


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("argv, words", [
    (["--set", "optim.lrr=0.1"], "'optim.lrr'"),
    (["--set", "optim.batch_size=big"], "'optim.batch_size'"),
    (["--set", "input_mode=sideways"], "'input_mode'"),
    (["--set", "optim.epochs=0"], "optim.epochs"),
    (["--set", "nokey"], "nokey"),
    (["--recipe", "no-such-recipe"], "no-such-recipe"),
    (["--recipe", "@recipe_toml"], "broken.toml"),
    (["--recipe", "@recipe_negative_lr"], "'optim.lr' must be a number in (0, inf), got -0.1"),
    (["--recipe", "@recipe_string_number"], "'optim.lr' must be a number in (0, inf), got '0.1'"),
    (["--recipe", "@recipe_bad_table"], "unknown key 'optimizer'"),
    # every key's type and range, from the one declaration (the fields of vrfer.training.recipe.Recipe)
    (["--set", "dsd.sparse=-3"], "'dsd.sparse' must be a whole number in [0, inf), got -3"),
    (["--set", "optim.lr=nan"], "'optim.lr' must be a number in (0, inf), got nan"),
    (["--set", "optim.lr=inf"], "'optim.lr'"),
    (["--set", "dsd.sparsity=[0.2, 1.5]"], "'dsd.sparsity' items must each be a number in [0, 1)"),
    (["--set", "dsd.sparsity=[0.2]"], "'dsd.sparsity' must have at least 2 items"),
    (["--set", "data.datasets=[]"], "'data.datasets' must have 1 to 2 items"),
    (["--set", 'data.datasets=["ferplus", "ferplus"]'], "names a dataset twice"),
    (["--set", "data.val=fer"], "'data.val' must be one of ferplus, affectnet, got 'fer'"),
    (["--set", "augment.headset_edge=[0.6, 0.4]"], "low <= high"),
    (["--set", "augment.rotate=-5"], "'augment.rotate'"),
    (["--set", "distill.temperature=0"], "'distill.temperature'"),
    (["--set", "image_size=2.5"], "'image_size' must be a whole number"),
    (["--set", "dsd.enabled=yes"], "'dsd.enabled' must be true or false, got 'yes'"),
    (["--set", "optim=1"], "'optim' must be a table"),
    (["--seed", "-1"], "'seed' must be a whole number in [0, 4294967295], got -1"),
    (["--init-from", "/nonexistent/run"], "/nonexistent/run"),
    (["--data-root", "ferplus=/nonexistent/fer"], "/nonexistent/fer"),
    (["--data-root", "foo=/nonexistent/fer"], "unknown data set 'foo'; known: ferplus, affectnet"),
    (["--out", "/proc/vrfer/run"], "/proc/vrfer/run"),
    (["--resume"], "nothing to resume"),
])
def test_train_bad_recipes_and_paths(run, corpus, argv, words):
    recipe = "--recipe", "cpu-full"
    if "--recipe" in argv:
        recipe = ()
    rc, out, err, new = run("train", *recipe, "--data-root", "@ferplus", "--out", "r", "--quiet",
                            *(["--set", "dsd.enabled=false"] if "optim.epochs=0" in argv else []), *argv)
    assert rc == 2 and not new and words in one_line(err)


def test_reproduce_malformed_label_rows(run, corpus):
    rc, out, err, new = run("reproduce", "--root", "@ferplus_bad", "--runs", "runs", "--out", "table")
    assert rc == 2 and not new and "--skip-bad" in one_line(err, "FER2013Test", "row")


def test_train_malformed_label_rows(run, corpus):
    rc, out, err, new = run("train", "--recipe", "cpu-full", "--data-root", "@ferplus_bad", "--out", "r")
    assert rc == 2 and not new and "--skip-bad" in one_line(err, "FER2013Valid", "row")


@pytest.mark.parametrize("argv, words", [
    (["--models", "resnet"], "resnet"),
    (["--root", "/nonexistent/fer"], "/nonexistent/fer"),
    (["--out", "/proc/vrfer/x"], "/proc/vrfer/x"),
    (["--set", "optim.lrr=1"], "'optim.lrr'"),
])
def test_reproduce_bad_options(run, corpus, argv, words):
    args = {"--root": str(corpus["ferplus"]), "--runs": "runs", "--out": "table"}
    args.update(dict(zip(argv[::2], argv[1::2])))
    rc, out, err, new = run("reproduce", *[x for kv in args.items() for x in kv])
    assert rc == 2 and not new and words in one_line(err)


# ------------------------------------------------------------------------------------------ models, export

@pytest.mark.parametrize("argv, words", [
    (["--model", "vrfer-cnn"], "untrained"),
    (["--model", "@model_text"], "model.safetensors"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--opset", "7"], "opset 7"),
    (["--out", "/proc/vrfer/x.onnx"], "/proc/vrfer/x.onnx"),
    (["--out", "model.txt"], "model.txt"),
    (["--int8-faces", "20"], "--int8-faces goes with --quantize int8"),
    (["--quantize", "int8", "--int8-data", "ferplus=x", "--int8-faces", "5"], "at least 10"),
    (["--quantize", "int8", "--int8-data", "ferplus=x", "--int8-faces", "0"], "at least 10"),  # was: 2000
])
def test_export_bad_options(run, corpus, argv, words):
    args = {"--model": "vrfer-lower", "--out": "m.onnx"}
    args.update(dict(zip(argv[::2], argv[1::2])))
    rc, out, err, new = run("export", *[x for kv in args.items() for x in kv], "--no-check")
    assert rc == 2 and not new and words.replace("@model_text", "") in one_line(err)


def test_export_of_an_untrained_architecture_when_asked(run, corpus):
    rc, out, err, new = run("export", "--model", "vrfer-cnn", "--out", "m.onnx", "--no-check", "--allow-untrained")
    assert rc == 0 and new == {"m.onnx", "m.json", "m.md"}


@pytest.mark.parametrize("argv, words", [
    (["@model_text", "--name", "x", "--trained-on", "y"], "model.safetensors"),
    (["/nonexistent/run", "--name", "x", "--trained-on", "y"], "/nonexistent/run"),
    (["@face", "--name", "x", "--trained-on", "y", "--result", "noequals"], "noequals"),
    (["/nonexistent/run", "--name", "../evil", "--trained-on", "y"], "no path"),
])
def test_package_bad_inputs(run, corpus, argv, words):
    rc, out, err, new = run("package", *argv, "--out", "x.safetensors")
    assert rc == 2 and not new and words.replace("@model_text", "") in one_line(err)


def test_package_does_not_replace_a_shipped_model_unless_forced(run, corpus, tmp_path):
    import hashlib

    from vrfer.models import create_model, save_model
    from vrfer.models.registry import resolve_trained
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), tmp_path / "m.safetensors")
    shipped = resolve_trained("vrfer-lower").weights
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    rc, out, err, new = run("package", str(tmp_path / "m.safetensors"), "--name", "vrfer-lower", "--trained-on", "y")
    assert rc == 2 and "--force" in one_line(err) and not new
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before


def test_written_model_files_follow_the_umask(run, corpus, tmp_path):
    from vrfer.models import create_model, save_model
    save_model(create_model("vrfer-cnn-small", pretrained=False), tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ------------------------------------------------------------------------------------------ serve

@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], "--port 70000"),
    (["--threads", "-1"], "--threads"),
    (["--threads", "100000"], "--threads: 100000"),
    (["--source-fps", "nan"], "--source-fps nan"),    # was: the server started
    (["--video", "@text"], "notes.jpg"),      # OpenCV opens it (an image sequence), but it holds no frame
    (["--alpha", "0"], "--alpha"),
    (["--video", "/nonexistent/clip.mp4"], "/nonexistent/clip.mp4"),
    (["--video", "@video_corrupt"], "corrupt.mp4"),
    (["--model", "@model_text"], "model.safetensors"),
    (["--host", "0.0.0.0"], "--token"),
    (["--camera", "97"], "camera 97"),        # and no OpenCV "[ WARN ]" lines of its own
])
def test_serve_bad_options(run, corpus, argv, words, monkeypatch):
    import uvicorn
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("the server started"))
    rc, out, err, new = run("serve", "--port", "0", "--face", "none", *argv)
    assert rc == 2 and out == "" and not new and words in one_line(err)


def test_serve_on_a_busy_port_fails_before_its_banner(run, corpus, monkeypatch):
    import uvicorn
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("the server started"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, out, err, new = run("serve", "--port", str(port), "--face", "none")
    assert rc == 2 and out == "" and f"127.0.0.1:{port}" in one_line(err)


def test_serve_answers_bad_frames_and_unknown_paths_in_json(corpus):
    import httpx
    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    cfg = ServeConfig(model="vrfer-lower", face="none", port=0)
    with ServerThread(create_app(cfg), cfg) as srv:
        for key in ("empty", "text", "truncated", "huge", "bomb"):
            r = httpx.post(srv.url + "/predict", content=corpus[key].read_bytes(), timeout=60)
            assert 400 <= r.status_code < 500 and r.json()["type"] == "error", key
        for method, path, status in (("GET", "/nope", 404), ("GET", "/predict", 405), ("DELETE", "/model", 405)):
            r = httpx.request(method, srv.url + path, timeout=30)
            assert r.status_code == status and r.json()["type"] == "error"
            assert r.json()["code"] == ("not_found" if status == 404 else "method_not_allowed")


def test_serve_websocket_odd_messages_get_an_error_and_the_connection_goes_on(corpus):
    from websockets.sync.client import connect

    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    cfg = ServeConfig(model="vrfer-lower", face="none", port=0)
    import base64
    import json
    frame = base64.b64encode(corpus["face"].read_bytes()).decode()
    cases = [  # (message, error code)
        ({"type": "frame", "data": frame, "id": True}, "bad_message"),        # was: "frame": true
        ({"type": "frame", "data": frame, "id": 1.5}, "bad_message"),
        ({"type": "frame", "data": frame, "id": "x" * 65}, "bad_message"),
        ({"type": "frame", "data": ""}, "bad_image"),
        ({"type": "frame", "data": 5}, "bad_message"),
        ({"type": "ping", "id": [1, 2]}, "bad_message"),                      # was: echoed
        ({"type": "config", "treshold": 0.6}, "bad_param"),                   # was: silently ignored
        ({"type": "config", "alpha": float("nan")}, "bad_param"),
        ({"type": "config", "min_frames": 2.5}, "bad_param"),
        ({"type": "config", "classes": 5}, "bad_param"),
        ({"type": "config", "prior": "weird"}, "bad_param"),
        ({"type": None}, "bad_message"),
        ("null", "bad_message"), ("[" * 10000, "bad_message"), (b"\x89PNG\r\n\x1a\n", "bad_image"),
        (b"BM" + b"\0" * 50, "bad_image"), (b"", "bad_image"), (corpus["truncated"].read_bytes(), "bad_image"),
    ]
    with ServerThread(create_app(cfg), cfg) as srv:
        with connect(srv.url.replace("http", "ws", 1) + "/ws", max_size=None, open_timeout=20) as ws:
            assert json.loads(ws.recv(timeout=20))["type"] == "hello"
            for msg, code in cases:
                ws.send(json.dumps(msg) if isinstance(msg, dict) else msg)
                ev = json.loads(ws.recv(timeout=60))
                assert ev["type"] == "error" and ev["code"] == code, (msg if len(str(msg)) < 80 else code, ev)
            ws.send(json.dumps({"type": "stats", "id": 3}))
            ev = json.loads(ws.recv(timeout=20))     # PROTOCOL.md: the row of GET /stats, without an "id"
            assert ev["type"] == "stats" and "id" not in ev and ev["errors"] == len(cases)
            ws.send(json.dumps({"type": "frame", "data": frame, "id": "last"}))
            assert json.loads(ws.recv(timeout=60))["frame"] == "last"


# ------------------------------------------------------------------------------------------ Python API

def test_the_python_api_names_the_path_and_says_which_types_it_takes(corpus):
    from vrfer.errors import VrferError
    from vrfer.recognizer import Recognizer
    from vrfer.training.recipe import from_dict
    rec = Recognizer(face="none")
    for bad, words in ((corpus["text"], f"{corpus['text']}: not an image"), ("nope.jpg", "nope.jpg: file not found"),
                       (str(corpus["huge"]), "15000x15000"), (corpus["device"], "/dev/zero: not a regular file"),
                       (None, "cannot read an image from NoneType: expected a file path"), (3, "from int"),
                       (b"", "empty image"), (np.zeros((0, 5), np.uint8), ""), (np.zeros((4, 4, 2)), "shape")):
        with pytest.raises(VrferError) as e:
            rec.predict(bad)
        assert words in str(e.value), (bad, e.value)
    for threads in (100000, -1, "2", 1.5, True):
        with pytest.raises(VrferError, match=r"threads=.*0 to \d"):
            Recognizer(face="none", threads=threads)
    for over, words in (({"dsd": {"sparse": -3}}, "'dsd.sparse'"), ({"optim": {"lr": 0}}, "'optim.lr'"),
                        ({"seed": 2 ** 40}, "'seed'"), ({"data": {"datasets": ["ferplus", "fer"]}}, "'data.datasets'")):
        with pytest.raises(VrferError, match=words):
            from_dict(over)


# ------------------------------------------------------------------------------------------ ONNX client

@pytest.fixture(scope="module")
def onnx_client():
    """examples/onnx_client.py's main(), run in-process (it imports no vrfer: test_one_path checks that)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("onnx_client", REPO / "examples" / "onnx_client.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture
def client(onnx_client, capfd, corpus):
    from vrfer.pretrained import __file__ as pretrained
    int8 = Path(pretrained).parent / "vrfer-lower-int8.onnx"      # exported by vrfer, metadata and all

    def go(*argv):
        args = [str(corpus[a[1:]]) if a.startswith("@") else str(int8) if a == "MODEL" else a for a in argv]
        try:
            code = onnx_client(args)
        except SystemExit as e:
            code = e.code
        out, err = capfd.readouterr()
        assert "Traceback" not in err, err
        return code, out, [line for line in err.splitlines() if line.strip()]
    return go


@pytest.mark.parametrize("key, code, words", [
    ("face", 0, None), ("gray16", 0, None), ("cmyk", 0, None), ("rgba", 0, None),
    ("text", 1, "not an image"),                 # was: PIL.UnidentifiedImageError's traceback
    ("empty", 1, "empty file"),
    ("truncated", 1, "truncated or damaged"),
    ("huge", 1, "15000x15000 = 225.0 megapixels"),
    ("bomb", 1, "10000x10000 = 100.0 megapixels"),
    ("missing", 1, "file not found"),
    ("folder", 1, "not a regular file"),
    ("tiny", 1, "1x1 pixels: too small"),        # as vrfer (MIN_SIDE); was: answered
])
def test_onnx_client_on_each_image(client, corpus, key, code, words):
    path = {"missing": "/nonexistent/face.png", "folder": str(corpus["ferplus"])}.get(key, f"@{key}")
    rc, out, err = client("MODEL", path)
    assert rc == code
    if code:
        name = corpus[key].name if path.startswith("@") else Path(path).name
        assert out == "" and words in one_line(err, name)
    else:
        assert len(out.splitlines()) == 1 and err == []


def test_onnx_client_goes_on_past_a_bad_image_and_exits_1(client):
    rc, out, err = client("MODEL", "@face", "@text", "@face")
    assert rc == 1 and len(out.splitlines()) == 2 and "notes.jpg" in one_line(err)


@pytest.mark.parametrize("model, argv, words", [
    ("@text", [], "not an ONNX model"),          # was: onnxruntime's InvalidProtobuf traceback
    ("@empty", [], "not an ONNX model"),
    ("/nonexistent/m.onnx", [], "file not found"),
    ("RETINAFACE", [], "not written by `vrfer export`"),
    ("MODEL", ["--face", "1,2"], "--face 1,2"),
    ("MODEL", ["--face", "a,b,c,d"], "--face a,b,c,d"),
    ("MODEL", ["--face", "0,0,0,10"], "width and height"),
    ("MODEL", ["--detected", "1,2,3,nan"], "--detected"),
    ("MODEL", ["--landmarks", "1,2,3,4,5,6,7,8,9,10"], "--landmarks goes with --detected"),
    ("MODEL", ["--detected", "1,2,30,40", "--landmarks", "1,2"], "--landmarks 1,2"),
    ("MODEL", ["--detected", "1,2,30,40", "--landmarks", "1,2,3,4,5,6,7,8,9,inf"], "--landmarks"),
    ("MODEL", ["--prior", "1,2"], "8 comma-separated numbers"),
    ("MODEL", ["--prior", "1,1,1,1,1,1,1,0"], "above 0"),
    ("MODEL", ["--prior-tau", "abc"], "--prior-tau"),
    ("MODEL", ["--prior-tau", "nan"], "--prior-tau"),
    ("MODEL", ["--classes", "boredom"], "boredom"),
    ("MODEL", ["--classes", " , "], "--classes"),
    ("MODEL", ["--face", "0,0,100000,100000"], "within 16384 pixels"),        # as vrfer (MAX_BOX); was: 10 GB padded
    ("MODEL", ["--detected", "0,0,1e12,1e12"], "within 16384 pixels"),        # was: numpy's traceback
])
def test_onnx_client_bad_model_or_options_stop_with_2(client, model, argv, words):
    if model == "RETINAFACE":
        from vrfer.pretrained import __file__ as pretrained
        model = str(Path(pretrained).parent / "retinaface_mnet025.onnx")
    rc, out, err = client(model, "@face", *argv)
    assert rc == 2 and out == "" and words in one_line(err)


def test_onnx_client_face_square_outside_the_image_is_that_image_s_failure(client):
    rc, out, err = client("MODEL", "@face", "--face", "500,500,10,10")
    assert rc == 1 and out == "" and "outside" in one_line(err, "face.png")


# ------------------------------------------------------------------------------------------ process level

def vrfer_proc(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vrfer", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def test_a_closed_stdout_pipe_ends_quietly_with_0_and_a_closed_stdout_is_one_line(tmp_path):
    # the reader goes away (`vrfer models --json | true`, `vrfer predict --json DIR | head -1`): as grep
    # does, the command stops quietly and exits 0 (the reader has what it wanted)
    for args in (["models", "--json"], ["predict", "--samples", "--face", "none"]):
        p = subprocess.Popen([sys.executable, "-m", "vrfer", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdout.close()
        err = p.stderr.read()
        assert p.wait(timeout=300) == 0 and err == "", (args, err)
    r = subprocess.run(f"{sys.executable} -m vrfer predict --samples --face none --json | head -1; exit ${{PIPESTATUS[0]}}",
                       shell=True, capture_output=True, text=True, timeout=300, executable="/bin/bash")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1 and r.stderr == ""
    # started with stdout closed (`vrfer models >&-`)
    r = subprocess.run(f"{sys.executable} -m vrfer models >&-", shell=True, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "stdout is closed" in r.stderr and "Traceback" not in r.stderr


def test_help_and_version_load_no_torch():
    code = ("import sys, vrfer.cli\n"
            "try:\n    vrfer.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    vrfer.cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "False"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vrfer.cli"], capture_output=True, text=True)
    assert not [line for line in r.stderr.splitlines() if re.search(r"\btorch\b", line)]
    import vrfer
    assert vrfer_proc("--version").stdout.strip() == f"vrfer {vrfer.__version__}"


def test_every_option_has_help_and_every_command_a_description_and_the_exit_codes():
    import argparse

    from vrfer.cli import build_parser

    def walk(parser, name):
        assert parser.description, f"{name}: no description"
        assert "exit codes" in parser.format_help(), name
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, sp in a.choices.items():
                    yield from walk(sp, f"{name} {sub}")
            elif a.dest != "help":
                assert a.help, f"{name} {a.option_strings or a.dest}: no help"
                yield name
    assert len(set(walk(build_parser(), "vrfer"))) >= 11


def test_the_corpus_covers_every_command_in_the_usage_table():
    table = (REPO / "docs" / "USAGE.md").read_text().split("## Command line", 1)[1].split("\n\n", 2)[1]
    readme = set(re.findall(r"^\| `vrfer (data summary|[a-z]+)", table, flags=re.M))
    assert {"predict", "serve", "explain", "export", "models", "data summary", "train", "evaluate", "reproduce",
            "package"} <= readme
    src = Path(__file__).read_text()
    missing = {c for c in readme if not re.search(r'(run\(|"vrfer", |\(\[)"' + c.replace(" ", '", "'), src)}
    assert not missing


# ----------------------------------------------------------------- adapt, calibrate, profiles (issue 20)

@pytest.mark.parametrize("argv, words", [
    (["--out", "a.safetensors"], "FOLDER"),
    (["@labelled_bad", "--out", "a.onnx"], ".safetensors"),
    (["@labelled_no_csv", "--out", "a.safetensors"], "labels.csv"),
    (["@labelled_bad", "--out", "a.safetensors"], "row 3"),                       # a bad label, named
    (["--unlabelled", "@not_a_dir_file", "--out", "a.safetensors", "--face", "none"], "not an image"),
    (["--unlabelled", "nowhere", "--out", "a.safetensors"], "not found"),
    (["@labelled_bad", "--model", "vrfer-cnn", "--out", "a.safetensors"], "untrained"),
])
def test_adapt_bad_inputs(run, corpus, argv, words):
    rc, out, err, new = run("adapt", *argv)
    assert rc == 2 and not new and words in one_line(err)


def test_adapt_without_a_subject_column_says_what_it_needs(run, corpus, tmp_path):
    d = tmp_path / "nosubject"
    shutil.copytree(corpus["labelled_unreadable"], d)
    (d / "labels.csv").write_text("file,label\nf0.png,1\nf1.png,4\n")
    rc, out, err, new = run("adapt", str(d), "--face", "none", "--out", "a.safetensors")
    assert rc == 2 and not new and "subject" in one_line(err)


@pytest.mark.parametrize("argv, words", [
    ([], "CLASS=PATH"),
    (["happiness"], "CLASS=PATH"),
    (["glee=@face"], "unknown class 'glee'"),           # joy, happy ... are labels.csv's spellings: taken
    (["happiness=nowhere.png"], "not found"),
    (["happiness=@text"], "not an image"),
    (["happiness=@noise"], "no face"),
    (["happiness=@video_corrupt"], "cannot open video"),
    (["happiness=@face", "--max-frames", "0"], "--max-frames"),
])
def test_calibrate_bad_inputs(run, corpus, argv, words):
    argv = [re.sub(r"=@(\w+)", lambda m: f"={corpus[m.group(1)]}", a) for a in argv]      # CLASS=@key
    rc, out, err, new = run("calibrate", *argv, "--out", "me.json")
    assert rc == 2 and not new and words in one_line(err)


@pytest.mark.parametrize("content, words", [
    ("{not json", "not JSON"),
    ('{"format": "vrfer-profile", "version": 1}', "no 'classes' field"),
    ('{"format": "something-else"}', "not a vrfer profile"),
    ('[1, 2, 3]', "not a vrfer profile"),
    ('{"format": "vrfer-profile", "version": 7}', "version 7"),
])
def test_predict_and_serve_refuse_a_damaged_profile(run, corpus, tmp_path, content, words):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(bad))
    assert rc == 2 and words in one_line(err, bad)
    rc, out, err, new = run("serve", "--port", "0", "--profile", str(bad))     # refused before it listens
    assert rc == 2 and words in one_line(err, bad)


def test_predict_refuses_a_missing_profile_and_runs_one_on_the_onnx_backend(run, corpus, tmp_path):
    rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", "nowhere.json")
    assert rc == 2 and "profile not found" in one_line(err)
    rc, out, err, new = run("calibrate", f"happiness={corpus['face']}", "--face", "none", "--out", "me.json")
    assert rc == 0
    # the ONNX export carries the representation, so a profile runs there too
    rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(run.work / "me.json"),
                            "--backend", "onnx")
    assert rc == 0


@pytest.mark.parametrize("argv, words", [
    (["--enrol", "1", "--seed", "-5"], "--seed -5"),                 # was: internal error ValueError
    (["--enrol", "1", "--draws", "100000000"], "1 to 100"),          # was: no bound, no progress
    (["--seed", "3"], "--seed goes with --enrol"),                    # was: silently ignored
    (["--draws", "3"], "--draws goes with --enrol"),
    (["--enrol", "1", "--out", "x"], "--out"),                        # was: silently ignored
    (["--adapt", "loo", "--out", "x"], "--out"),
])
def test_evaluate_seed_draws_and_out_are_bounded_and_never_ignored(run, corpus, argv, words):
    rc, out, err, new = run("evaluate", "--dataset", "folder", "--root", "@labelled_unreadable", "--skip-bad", *argv)
    assert rc == 2 and not new and words in one_line(err)


@pytest.mark.parametrize("argv, words", [
    (["--dataset", "ferplus", "--root", "@ferplus", "--adapt", "loo"], "--dataset folder"),
    (["--dataset", "ferplus", "--root", "@ferplus", "--occlusion", "headset"], "--dataset folder"),
    (["--dataset", "folder", "--root", "@labelled_unreadable", "--enrol", "-1", "--skip-bad"], "K >= 0"),
    (["--dataset", "folder", "--root", "@labelled_unreadable", "--enrol", "1", "--draws", "0", "--skip-bad"],
     "--draws"),
    (["--dataset", "folder", "--root", "@labelled_unreadable", "--adapt", "loo", "--skip-bad"], "subject"),
])
def test_evaluate_adapt_and_calibrate_bad_options(run, corpus, argv, words):
    rc, out, err, new = run("evaluate", *argv)
    assert rc == 2 and words in one_line(err)


# ------------------------------------------------------- personal inputs checked at the door (issue 34)

@pytest.fixture(scope="module")
def good_profile(tmp_path_factory, corpus):
    """A real profile of the bundled model (vrfer calibrate on the corpus face), as its JSON object."""
    import json

    from vrfer.recognizer import Recognizer
    rec = Recognizer(face="none")
    return json.loads(json.dumps(rec.enrol({"happiness": [str(corpus["face"])]}, use=False).to_json()))


def _profile_cases(d):
    import copy
    cases = []

    def case(words, **change):
        p = copy.deepcopy(d)
        for k, v in change.items():
            p[k] = v(p) if callable(v) else v
        cases.append((p, words))
    case("384 expected", weight=lambda p: [r[:-1] for r in p["weight"]])          # 383 numbers a row
    case("within +-1000", bias=[1e38])
    case("within +-1000", weight=lambda p: [[1e6] + r[1:] for r in p["weight"]])
    case("profile version True", version=True)
    case("must hold numbers", bias=["0.5"])
    case("must hold numbers", weight=lambda p: [[True] + r[1:] for r in p["weight"]])
    case("must be a list of numbers", weight=lambda p: [5 for _ in p["weight"]])  # was: numpy's inhomogeneous shape
    case("must be text", model_sha256=5)
    return cases


def test_a_profile_that_does_not_fit_the_model_is_refused_in_one_line_everywhere(run, corpus, tmp_path, good_profile):
    import json
    import warnings

    from vrfer.errors import VrferError
    from vrfer.recognizer import Recognizer
    rec = Recognizer(face="none")
    for i, (prof, words) in enumerate(_profile_cases(good_profile)):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(json.dumps(prof))
        rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(bad))
        assert rc == 2 and words in one_line(err, bad), (words, err)
        with warnings.catch_warnings():
            warnings.simplefilter("error")                  # no RuntimeWarning leaks (1e300 and the like)
            with pytest.raises(VrferError, match=re.escape(words)):
                Recognizer(face="none", profile=str(bad))
            with pytest.raises(VrferError, match=re.escape(words)):
                rec.set_profile(prof)                       # the JSON object serve's `profile` event carries
    rc, out, err, new = run("serve", "--port", "0", "--profile", str(tmp_path / "bad0.json"))
    assert rc == 2 and "384 expected" in one_line(err)
    with pytest.raises(VrferError, match="profile=int: a profile is"):
        Recognizer(face="none", profile=5)
    rec.set_profile(good_profile)                            # a dict works, as does the file with a BOM
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(good_profile).encode())
    rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(bom))
    assert rc == 0 and err == []


def test_a_deep_huge_or_piped_profile_is_refused_at_once(run, corpus, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)             # was: internal error RecursionError
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (5 * 2 ** 20))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)                                          # was: blocked forever
    for path, words in ((deep, "nested over"), (big, "at most 4 MB"), (fifo, "a pipe")):
        rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(path))
        assert rc == 2 and words in one_line(err, path)


def test_serve_calibrate_load_refuses_a_misfit_profile_and_captures_are_bounded(corpus, good_profile):
    """calibrate load answers bad_param (was: accepted, then every frame failed); one client capturing without
    end holds at most MAX_CAPTURED faces (the `captured` counter), and the connection goes on."""
    import json

    from websockets.sync.client import connect

    from vrfer.serve import connection as serve_app
    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    cfg = ServeConfig(model="vrfer-lower", face="none", port=0)
    frame = corpus["face"].read_bytes()
    cap = 40
    old = serve_app.MAX_CAPTURED
    serve_app.MAX_CAPTURED = cap                 # the bound itself, made small: the soak runs in seconds
    try:
        with ServerThread(create_app(cfg), cfg) as srv:
            with connect(srv.url.replace("http", "ws", 1) + "/ws", max_size=None, open_timeout=20) as ws:
                assert json.loads(ws.recv(timeout=20))["type"] == "hello"
                for prof, words in _profile_cases(good_profile):
                    ws.send(json.dumps({"type": "calibrate", "action": "load", "profile": prof}))
                    ev = json.loads(ws.recv(timeout=60))
                    assert ev["type"] == "error" and ev["code"] == "bad_param" and words in ev["message"], ev
                ws.send(json.dumps({"type": "calibrate", "action": "load", "profile": "/etc/passwd"}))
                ev = json.loads(ws.recv(timeout=60))
                assert ev["code"] == "bad_param" and "JSON object" in ev["message"]
                refused = 0
                for _ in range(cap // 10 + 3):           # keeps capturing past the bound
                    ws.send(json.dumps({"type": "calibrate", "action": "start", "label": "happiness",
                                        "frames": 10}))
                    ev = json.loads(ws.recv(timeout=60))
                    if ev["type"] == "error":
                        assert ev["code"] == "bad_param" and f"{cap} faces" in ev["message"]
                        refused += 1
                        continue
                    for _ in range(10):
                        ws.send(frame)
                        kinds = set()
                        while "prediction" not in kinds:
                            kinds.add(json.loads(ws.recv(timeout=60))["type"])
                    ws.send(json.dumps({"type": "stats"}))
                    ev = json.loads(ws.recv(timeout=20))
                    while ev["type"] != "stats":
                        ev = json.loads(ws.recv(timeout=20))
                    captured = ev["captured"]
                    assert captured <= cap
                assert refused >= 2 and captured == cap
                ws.send(json.dumps({"type": "calibrate", "action": "finish"}))
                assert json.loads(ws.recv(timeout=60))["type"] == "profile"
    finally:
        serve_app.MAX_CAPTURED = old


def test_a_float_image_just_outside_0_1_is_still_a_0_1_image_and_a_wild_one_is_refused():
    from vrfer.errors import VrferError
    from vrfer.inference.images import image_from_array
    img = face_like().astype(np.float32) / 255.0
    want = image_from_array(img)
    for nudge in (1.0001, -0.008):                 # was: read as a 0-255 image (near-black)
        bent = img.copy()
        bent[0, 0] = nudge
        got = image_from_array(bent)
        assert np.array_equal(got[1:], want[1:]) and got.max() > 150
    assert np.array_equal(image_from_array(img * 255 + 10), np.clip(np.rint(img * 255 + 10), 0, 255).astype(np.uint8))
    for bad, words in ((img * 1000, "expected 0 to 1 or 0 to 255"), (np.full((8, 8), np.nan, np.float32), "NaN")):
        with pytest.raises(VrferError, match=words):
            image_from_array(bad)


def test_a_truncated_or_piped_video_is_never_used_in_part_by_calibrate_adapt_or_enrol(run, corpus, tmp_path):
    from vrfer.errors import VrferError
    from vrfer.recognizer import Recognizer
    fifo = tmp_path / "fifo.avi"
    os.mkfifo(fifo)                                                  # was: blocked forever
    cut = corpus["video_truncated"]                                  # was: 20-odd of 48 frames, exit 0, no word
    for video, words in ((cut, "truncated"), (fifo, "a pipe")):
        rc, out, err, new = run("calibrate", f"happiness={video}", "--face", "none", "--out", "me.json")
        assert rc == 2 and not new and words in one_line(err, video.name)
        rc, out, err, new = run("adapt", "--unlabelled", str(video), "--face", "none", "--out", "a.safetensors")
        assert rc == 2 and not new and words in one_line(err, video.name)
        with pytest.raises(VrferError, match=words):
            Recognizer(face="none").enrol({"happiness": str(video)}, use=False)
    rc, out, err, new = run("predict", str(fifo), "--face", "none")  # was: blocked forever
    assert rc == 1 and "a pipe" in one_line(err, fifo.name)


def test_adapt_skip_bad_skips_an_unreadable_unlabelled_image_as_its_help_says(run, corpus, tmp_path):
    d = tmp_path / "unlabelled"
    d.mkdir()
    shutil.copy(corpus["face"], d / "a.png")
    shutil.copy(corpus["face"], d / "c.png")                         # AdaBN needs 2 faces at least
    shutil.copy(corpus["text"], d / "b.jpg")                         # was: exit 2 although --skip-bad
    rc, out, err, new = run("adapt", "--unlabelled", str(d), "--face", "none", "--out", "a.safetensors",
                            "--skip-bad")
    assert rc == 0 and "a.safetensors" in new and "1 unreadable image or video skipped" in out + "\n".join(err)
    rc, out, err, new = run("adapt", "--unlabelled", str(d), "--face", "none", "--out", "b.safetensors")
    assert rc == 2 and not new and "not an image" in one_line(err, "b.jpg")


def test_calibrate_takes_the_spellings_labels_csv_takes_and_refuses_a_folder_of_several_people(run, corpus, tmp_path):
    from vrfer.classes import class_name
    assert [class_name(w) for w in ("Happy", " joy", "angry", "fear", "nonsense")] == \
        ["happiness", "happiness", "anger", "fear", "nonsense"]
    d = tmp_path / "people"
    d.mkdir()
    for f in ("a.png", "b.png"):
        shutil.copy(corpus["face"], d / f)
    (d / "labels.csv").write_text("file,label_name,subject\na.png,happy,P1\nb.png,sad,P2\n")
    rc, out, err, new = run("calibrate", "--folder", str(d), "--face", "none", "--out", "me.json")
    assert rc == 2 and not new and "2 people" in one_line(err, "labels.csv")      # was: one blurred profile
    rc, out, err, new = run("calibrate", f"nonsense={corpus['face']}", "--face", "none", "--out", "me.json")
    assert rc == 2 and not new and "unknown class 'nonsense'" in one_line(err)


def test_an_unknown_option_points_at_the_commands_own_help(run):
    rc, out, err, new = run("predict", "@face", "--bogus", "3")
    assert rc == 2 and "unrecognized arguments: --bogus 3 (see vrfer predict --help)" in one_line(err)


def test_onnx_client_refuses_the_profiles_and_takes_the_images_vrfer_refuses_and_takes(client, run, corpus, tmp_path,
                                                                                    good_profile):
    """examples/onnx_client.py mirrors vrfer's limits (no vrfer inside): each profile vrfer refuses is refused in
    one line naming it with exit 2 (was: 383-wide rows, 1e38, "0.5", true accepted; NaN read; a deep file a
    RecursionError traceback; a pipe blocked forever); a BOM is read; a JPEG over 64 megapixels is decoded at a
    smaller scale as vrfer does (was: refused), so both answer it alike."""
    import json
    good = tmp_path / "good.json"
    good.write_bytes(b"\xef\xbb\xbf" + json.dumps(good_profile).encode())
    rc, out, err = client("MODEL", "@face", "--profile", str(good))
    assert rc == 0 and err == [] and json.loads(out)["label"] == "happiness"
    cases = [(prof, words) for prof, words in _profile_cases(good_profile)]
    deep, big, fifo, nan = (tmp_path / n for n in ("deep.json", "big.json", "fifo.json", "nan.json"))
    deep.write_text("[" * 100000 + "]" * 100000)
    big.write_bytes(b" " * (5 * 2 ** 20))
    os.mkfifo(fifo)
    nan.write_text(json.dumps(good_profile).replace(json.dumps(good_profile["bias"]), "[NaN]"))
    files = [(deep, "nested over 20"), (big, "at most 4 MB"), (fifo, "not a regular file"), (nan, "finite")]
    for i, (prof, words) in enumerate(cases):
        files.append((tmp_path / f"bad{i}.json", words))
        files[-1][0].write_text(json.dumps(prof))
    for path, words in files:
        rc, out, err = client("MODEL", "@face", "--profile", str(path))
        assert rc == 2 and out == "" and words in one_line(err, path.name), (words, err)
    jpeg = tmp_path / "big.jpg"                       # 8200x8000 = 65.6 megapixels, over the limit of 64
    Image.fromarray(face_like(400)).resize((8200, 8000)).save(jpeg, quality=80)
    rc, out, err = client("MODEL", str(jpeg))
    assert rc == 0 and err == []
    rc2, out2, _, _ = run("predict", str(jpeg), "--face", "none", "--json", "--backend", "onnx")
    assert rc2 == 0 and json.loads(out2)["label"] == json.loads(out)["label"]


# ------------------------------------------------------- odd inputs a new user brings (issue 34, the last round)

def test_odd_paths_are_named_in_one_line_and_an_empty_one_never_means_the_working_folder(run, corpus, tmp_path):
    long_name = str(tmp_path / ("y" * 300 + ".png"))                # was: internal error OSError (name too long)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)                                            # was: "file not found"
    shutil.copy(corpus["face"], run.work / "here.png")               # would be read if "" meant the working folder
    rc, out, err, new = run("predict", "", long_name, str(loop), "--face", "none", "--json")
    assert rc == 1 and out == "" and len(err) == 3
    assert "'': empty path" in err[0] and "File name too long" in err[1] and "symbolic links" in err[2]
    rc, out, err, new = run("explain", "", "--face", "none", "--out", "x")
    assert rc == 1 and "'': empty path" in one_line(err) and not new        # was: ": is a folder, not an image"
    rc, out, err, new = run("adapt", "--unlabelled", "", "--face", "none", "--out", "a.safetensors")
    assert rc == 2 and "--unlabelled '': empty path" in one_line(err) and not new
    rc, out, err, new = run("evaluate", "--dataset", "folder", "--root", "", "--face", "none")
    assert rc == 2 and "labelled folder '': empty path" in one_line(err)
    rc, out, err, new = run("data", "summary", "--dataset", "ferplus", "--root", "")
    assert rc == 2 and "--root '': empty path" in one_line(err)              # was: "." named, not the empty path
    rc, out, err, new = run("predict", "@face", "--face", "none", "--model", "/dev/null")
    assert rc == 2 and "/dev/null: not a regular file (a character device)" in one_line(err)   # was: "not found"


def test_a_path_into_the_bundled_samples_prints_as_given(run):
    from vrfer.inputs import samples_path
    given = str(samples_path() / "fer-anger-fer0032565.png")
    rc, out, err, new = run("predict", given, "--face", "none", "--json")
    assert rc == 0 and out.count(f'"source": "{given}"') == 1                # was: "samples/fer-anger-..."


def test_serve_video_follows_predicts_rule_the_extension_decides(run, corpus, tmp_path):
    """An mp4 named .jpg is "not an image" in predict, and serve --video refuses it: a file is a video by its
    extension (vrfer.recognizer.VIDEO_EXTS) everywhere (was: it played in serve)."""
    mp4_as_jpg = tmp_path / "clip.jpg"
    shutil.copy(corpus["video_truncated"].with_name("whole.avi"), mp4_as_jpg)
    rc, out, err, new = run("predict", str(mp4_as_jpg), "--face", "none")
    assert rc == 1 and "not an image" in one_line(err, "clip.jpg")
    rc, out, err, new = run("serve", "--port", "0", "--video", str(mp4_as_jpg))
    assert rc == 2 and "by its extension" in one_line(err, "clip.jpg")
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    rc, out, err, new = run("serve", "--port", "0", "--video", str(fifo))
    assert rc == 2 and "a pipe" in one_line(err, "fifo.mp4")               # was: "video file not found"


def test_labels_csv_with_a_column_twice_or_a_huge_field_and_split_on_a_folder(run, corpus, tmp_path):
    for name, text, words in (("twice", "file,label_name,label_name\nf0.png,happy,sad\n", "column 'label_name' twice"),
                              ("huge", "file,label_name\nf0.png," + "x" * 200000 + "\n", "row 2: not a CSV row")):
        d = tmp_path / name                  # twice: was the last column, silently; huge: internal error csv.Error
        shutil.copytree(corpus["labelled_bad"], d)
        (d / "labels.csv").write_text(text)
        rc, out, err, new = run("evaluate", "--dataset", "folder", "--root", str(d), "--face", "none")
        assert rc == 2 and words in one_line(err, "labels.csv")
    rc, out, err, new = run("evaluate", "--dataset", "folder", "--root", "@labelled_bad", "--split", "holdout")
    assert rc == 2 and "--split holdout" in one_line(err)                    # was: ignored silently


def test_class_spellings_labels_csv_takes_are_taken_by_every_option(run, corpus, tmp_path):
    import json
    rc, out, err, new = run("predict", "@face", "--face", "none", "--classes", "happy,sad", "--json")
    assert rc == 0 and {k for k, v in json.loads(out)["probs"].items() if v} == {"happiness", "sadness"}
    prior = tmp_path / "prior.json"
    prior.write_bytes(b"\xef\xbb\xbf" + json.dumps({"happy": 1, "neutral": 1, "surprise": 1, "sadness": 1, "anger": 1,
                                                     "disgust": 1, "fear": 1, "contempt": 1}).encode())
    rc, out, err, new = run("predict", "@face", "--face", "none", "--prior", str(prior))
    assert rc == 0 and err == []                                            # was: BOM refused, "unknown happy"
    rc, out, err, new = run("explain", "@face", "--face", "none", "--out", "x", "--target", "happy", "--json")
    assert rc == 0 and json.loads(out)["explained"] == "happiness"


def test_a_prior_file_is_read_as_a_profile_is(run, corpus, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)                 # was: internal error RecursionError
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)                                               # was: blocked forever
    for path, words in ((deep, "nested over"), (fifo, "a pipe"), (Path("/dev/zero"), "a character device")):
        rc, out, err, new = run("predict", "@face", "--face", "none", "--prior", str(path))   # /dev/zero: memory
        assert rc == 2 and words in one_line(err, f"--prior {path}")


def test_outputs_of_another_kind_are_refused_before_any_work(run, corpus):
    shutil.copy(corpus["face"], run.work / "photo.png")
    rc, out, err, new = run("calibrate", f"happiness={corpus['face']}", "--face", "none", "--out", "photo.png")
    assert rc == 2 and ".json file" in one_line(err, "photo.png")           # was: the photo overwritten
    assert (run.work / "photo.png").read_bytes() == corpus["face"].read_bytes()
    rc, out, err, new = run("adapt", "--unlabelled", "@face", "--face", "none", "--out", "a.onnx")
    assert rc == 2 and ".safetensors file" in one_line(err, "a.onnx")


def test_the_python_api_says_what_it_takes(corpus, tmp_path):
    from vrfer.errors import VrferError
    from vrfer.recognizer import Recognizer
    rec = Recognizer(face="none")
    for call, words in ((lambda: Recognizer(model=5), "model=int: expected a model name"),      # was: ".cfg"
                        (lambda: Recognizer(face=5), "face 5: expected x,y,w,h"),                 # was: TypeError
                        (lambda: Recognizer(face="none", classes=5), "classes=int"),             # was: TypeError
                        (lambda: list(rec.video(str(corpus["video_truncated"]), max_frames=0)), "max_frames 0"),
                        (lambda: rec.enrol(str(corpus["face"]), use=False), "examples: expected"),  # was: unpack
                        (lambda: rec.predict(""), "'': empty path")):
        with pytest.raises(VrferError, match=re.escape(words)):
            call()
    assert rec.enrol({"happy": str(corpus["face"])}, use=False).classes == ["happiness"]


def test_serve_refuses_a_misspelt_or_repeated_query_parameter(corpus):
    import json

    import httpx
    from websockets.sync.client import connect

    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    cfg = ServeConfig(model="vrfer-lower", face="none", port=0)
    face = corpus["face"].read_bytes()
    with ServerThread(create_app(cfg), cfg) as srv:
        for query, words in (("clases=neutral", "unknown setting 'clases'"),      # was: ignored, all 8 classes
                             ("classes=neutral&classes=happiness", "'classes' given 2 times")):   # was: one dropped
            r = httpx.post(f"{srv.url}/predict?{query}", content=face, timeout=60)
            assert r.status_code == 400 and r.json()["code"] == "bad_param" and words in r.json()["message"]
            with connect(srv.url.replace("http", "ws", 1) + "/ws?" + query, open_timeout=20) as ws:
                ev = json.loads(ws.recv(timeout=20))
                assert ev["code"] == "bad_param" and words in ev["message"]
        r = httpx.post(f"{srv.url}/predict?classes=happy,sad&token=", content=face, timeout=60)
        assert r.status_code == 200 and {k for k, v in r.json()["faces"][0]["probs"].items() if v} == \
            {"happiness", "sadness"}
        with connect(srv.url.replace("http", "ws", 1) + "/ws", open_timeout=20) as ws:
            json.loads(ws.recv(timeout=20))
            ws.send(json.dumps({"type": "calibrate", "action": "start", "label": "happy", "frames": 1}))
            assert json.loads(ws.recv(timeout=20))["label"] == "happiness"        # was: bad_param


def test_batch_checks_its_options_once_names_each_failure_and_runs_an_input_once(run, corpus, tmp_path):
    import json
    for argv, words in ((["--profile", str(corpus["face"])], "damaged profile"),   # was: a traceback per input
                        (["--workers", "100000"], "--workers 100000: expected a whole number, 1 to"),  # was: a hang
                        (["--address", "bogus"], "--address bogus"),                  # was: internal error
                        (["--out", "/proc/job"], "--out /proc/job: cannot write")):   # was: internal error
        out = [] if "--out" in argv else ["--out", "job"]
        rc, o, err, new = run("batch", "@video_truncated", *out, *argv, "--face", "none", "--no-progress")
        assert rc == 2 and words in one_line(err), err
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "v.avi", 3)
    rc, o, err, new = run("batch", str(src), str(src / "v.avi"), "", "cam:0", "--out", str(src / "job"),
                          "--workers", "1", "--face", "none", "--no-progress", "--json")
    assert rc == 1 and json.loads(o)["done"] == 1 and json.loads(o)["frames"] == 3   # once, not twice
    assert len(err) == 2 and "'': empty path" in err[0] and "cam:0: a webcam never ends" in err[1]
    assert len(list((src / "job" / "timelines").glob("*.png"))) == 1
    rc, o, err, new = run("batch", str(src), "--out", str(src / "job"), "--workers", "1", "--face", "none",
                          "--no-progress", "--json")
    assert rc == 0 and json.loads(o)["inputs"] == 1            # its own timeline PNG is no input of the next run


def test_predict_out_never_writes_over_an_input_or_one_copy_over_another(run, corpus, tmp_path):
    d = tmp_path / "photos"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    shutil.copy(corpus["face"], d / "a" / "x.png")
    shutil.copy(corpus["rgba"], d / "b" / "x.png")
    before = (d / "a" / "x.png").read_bytes()
    rc, out, err, new = run("predict", str(d), "--face", "none", "--out", str(d))     # was: photos overwritten
    assert rc == 2 and out == "" and "written over the input photo" in one_line(err, "x.png")
    assert (d / "a" / "x.png").read_bytes() == before and sorted(p.name for p in d.rglob("*")) == ["a", "b", "x.png",
                                                                                                     "x.png"]
    rc, out, err, new = run("predict", str(d / "a" / "x.png"), str(d / "b" / "x.png"), "--face", "none", "--out", "o")
    assert rc == 0 and {"o/x.png", "o/x_2.png"} <= new              # was: one o/x.png, the second over the first


def test_a_profile_with_a_key_written_twice_is_refused_by_vrfer_and_the_onnx_client(run, client, tmp_path,
                                                                                     good_profile):
    import json
    text = json.dumps(good_profile).replace('"bias":', '"bias": [0.5], "bias":', 1)   # was: the last one, silently
    bad = tmp_path / "twice.json"
    bad.write_text(text)
    rc, out, err, new = run("predict", "@face", "--face", "none", "--profile", str(bad))
    assert rc == 2 and "key 'bias' given twice" in one_line(err, "twice.json")
    rc, out, err = client("MODEL", "@face", "--profile", str(bad))
    assert rc == 2 and "key 'bias' given twice" in one_line(err, "twice.json")


def test_batch_run_in_python_says_what_it_takes(corpus, tmp_path):
    import vrfer.batch
    from vrfer.errors import VrferError
    video = str(corpus["video_truncated"])
    for kw, words in (({"out": None}, "out=None: expected the job's folder"),            # was: TypeError
                      ({"out": str(tmp_path / "j"), "workers": "2"}, "--workers '2': expected a whole number"),
                      ({"out": str(tmp_path / "j"), "face": "sideways"}, "face 'sideways'")):
        with pytest.raises(VrferError, match=re.escape(words)):
            vrfer.batch.run([video], **kw)
    assert not (tmp_path / "j").exists()              # refused before the job's folder is made


def test_an_animation_and_a_file_named_as_a_folder_are_said_not_read_in_part(run, tmp_path):
    """An animated GIF (or multi-page TIFF, APNG) is not silently read as its first frame; `face.png/` is not read
    as face.png (Path drops the slash): each one line naming it, exit 1 (issue 34)."""
    from PIL import Image
    frames = [Image.fromarray(np.full((60, 60), v, np.uint8)) for v in (10, 200)]
    anim = tmp_path / "anim.gif"
    frames[0].save(anim, save_all=True, append_images=frames[1:])
    code, out, lines, _ = run("predict", anim, "--face", "none")
    assert code == 1 and out == ""
    one_line(lines, anim, "2 frames")
    face = tmp_path / "face.png"
    frames[0].save(face)
    code, out, lines, _ = run("predict", f"{face}/", "--face", "none")
    assert code == 1 and out == ""
    one_line(lines, f"{face}/", "not a folder")


def test_adapt_skip_bad_skips_a_truncated_video_whole_and_counts_it(run, tmp_path):
    """adapt --unlabelled with --skip-bad: a truncated video is skipped as a whole (none of its frames used) and
    counted, as an unreadable image is; without --skip-bad it stops naming it (issue 34)."""
    import cv2

    from test_adapt_calibrate import labelled_folder
    folder = labelled_folder(tmp_path / "setup", people=2, sessions=("a",), classes=(1, 2))
    video = tmp_path / "cut.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 48))
    for _ in range(40):
        w.write(np.full((48, 48, 3), 128, np.uint8))
    w.release()
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])                 # the header still announces 40 frames
    out = tmp_path / "a.safetensors"
    code, _, lines, _ = run("adapt", folder, "--unlabelled", video, "--face", "none", "--out", out)
    assert code == 2 and any(str(video) in line for line in lines)
    code, said, lines, _ = run("adapt", folder, "--unlabelled", video, "--face", "none", "--out", out, "--skip-bad",
                               "--no-estimate")
    assert code == 0, lines
    assert "1 unreadable image or video skipped" in said + "\n".join(lines)
