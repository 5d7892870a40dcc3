"""Adaptation to a setup (vrfer.personal.adapt) and calibration to a person (vrfer.personal.calibration), as specifications:
what each changes, what it keeps, the profile file and its refusals, and an honest evaluation that never
scores a face with a fit that saw that person (adapt) or that session (calibrate), checked by file name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vrfer.personal.adapt import adabn, adapt_arrays
from vrfer.inference.representation import fit_head
from vrfer.personal.calibration import enrol
from vrfer.fingerprint import model_fingerprint
from vrfer.personal.profile_check import check_profile as load_profile
from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.models import create_model
from vrfer.models.registry import save_model
from vrfer.recognizer import Recognizer
from vrfer.inference.representation import head, logits_and_features

from conftest import TAIWANESE, needs_data


def small_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").eval()


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def labelled_folder(root: Path, people=3, sessions=("a", "b"), classes=(1, 2, 3, 4), per=1, seed=0) -> Path:
    """A labels.csv folder of distinct noise images: file, label, subject, session."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "subject", "session"])
        for p in range(people):
            for s in sessions:
                for c in classes:
                    for k in range(per):
                        name = f"p{p}_{s}_{c}_{k}.png"
                        img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                        img[:, :4] = 40 * c          # a class cue, so that the fits have something to learn
                        Image.fromarray(img).save(root / name)
                        w.writerow([name, c, f"p{p}", s])
    return root


# ------------------------------------------------------------------------------------------- adaptation

def test_adabn_sets_the_normalisation_statistics_to_the_new_faces_and_keeps_the_weights():
    m = small_model()
    bright = faces(64) // 4 + 180
    a = adabn(m, bright)
    bn0 = next(x for x in a.modules() if isinstance(x, torch.nn.BatchNorm2d))
    conv0 = next(x for x in a.modules() if isinstance(x, torch.nn.Conv2d))
    from vrfer.inference.preprocess import prepare
    with torch.no_grad():
        out = conv0(prepare(bright, a.cfg))
    assert torch.allclose(bn0.running_mean, out.mean((0, 2, 3)), atol=1e-3)
    for (k, v), (_, w) in zip(m.state_dict().items(), a.state_dict().items()):
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, w), k
    assert not torch.equal(next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)).running_mean,
                           bn0.running_mean)


def test_the_refitted_layer_learns_the_labels_and_leaves_rows_it_may_not_change():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int) + 1          # classes 1 and 2, told apart by the first feature
    W0, b0 = np.zeros((8, 5), np.float32), np.zeros(8, np.float32)
    W, b = fit_head(X, y, W0, b0, lam=1e-3)
    assert ((X @ W.T + b).argmax(1) == y).mean() > 0.95
    W, b = fit_head(X, y, W0, b0, lam=1e-3, rows=[1, 2])
    assert np.array_equal(W[[0, 3, 4, 5, 6, 7]], W0[[0, 3, 4, 5, 6, 7]]) and b[0] == 0


def test_a_strong_pull_keeps_the_generic_layer():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 5)), rng.integers(0, 8, 30)
    W0 = rng.normal(size=(8, 5)).astype(np.float32)
    b0 = rng.normal(size=8).astype(np.float32)
    W, b = fit_head(X, y, W0, b0, lam=1e6)
    assert np.abs(W - W0).max() < 1e-4


def test_the_refit_reaches_the_optimum_where_the_features_share_a_large_offset():
    # pooled ReLU features all point one way; the solver must still land on the minimum of
    # mean cross-entropy + lam * ||W - W0||^2 (its gradient vanishes there)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 6)) + 5.0
    y = rng.integers(0, 4, 80)
    W0 = rng.normal(size=(4, 6)).astype(np.float32)
    b0 = rng.normal(size=4).astype(np.float32)
    lam = 0.1
    W, b = (a.astype(np.float64) for a in fit_head(X, y, W0, b0, lam))
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(4)[y]) / len(X)
    assert np.abs(g.T @ X + 2 * lam * (W - W0)).max() < 1e-4 and np.abs(g.sum(0)).max() < 1e-4


def test_an_adapted_model_is_a_model_file_every_command_takes(tmp_path, capsys):
    m = small_model()
    crops, labels = faces(40), np.arange(40) % 4
    a = adapt_arrays(m, crops, labels, unlabelled=faces(10, seed=3))
    assert a.cfg.extra["adapted"]["base_model"] == m.cfg.name and a.cfg.extra["adapted"]["faces"] == 40
    assert a.cfg.extra["default_post"]["prior"] == "train"
    path = tmp_path / "setup.safetensors"
    save_model(a, path)
    # the file answers as the object does
    ref = logits_and_features(a, crops[:3])[0]
    back = create_model(str(path))
    assert np.allclose(logits_and_features(back, crops[:3])[0], ref, atol=1e-5)
    img = tmp_path / "face.png"
    Image.fromarray(crops[0]).save(img)
    assert main(["predict", str(img), "--model", str(path), "--face", "none", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    p = np.exp(ref[0] - ref[0].max())
    assert abs(row["probs"][row["label"]] - (p / p.sum()).max()) < 1e-4


def test_the_adapted_layer_is_fitted_on_each_labelled_face_and_its_mirror_image():
    """Flip augmentation, as the paper trains: the new last layer is the fit on the faces' representations and
    their mirror images' (under the adapted normalisation), each with the face's label; the scored face is not
    mirrored, so answering costs what it did. mirror=False fits on the faces alone."""
    m = small_model()
    crops, labels = faces(24), np.arange(24) % 4
    a = adapt_arrays(m, crops, labels)
    plain = adapt_arrays(m, crops, labels, mirror=False)
    assert a.cfg.extra["adapted"]["mirror"] is True and plain.cfg.extra["adapted"]["mirror"] is False
    assert a.cfg.extra["adapted"]["faces"] == 24
    normalised = adabn(m, crops)
    f = logits_and_features(normalised, crops)[1]
    f_mirror = logits_and_features(normalised, np.ascontiguousarray(crops[:, :, ::-1]))[1]
    w0, b0 = (t.detach().numpy() for t in (head(m).weight, head(m).bias))
    for model, X, y in ((a, np.concatenate([f, f_mirror]), np.concatenate([labels, labels])), (plain, f, labels)):
        w, b = fit_head(X, y, w0, b0, 1e-2, rows=[0, 1, 2, 3])
        assert np.allclose(head(model).weight.detach().numpy(), w, atol=1e-5)
        # classes without a labelled face (4-7 here) keep the generic rows exactly (issue 34: was pushed down)
        assert np.array_equal(head(model).weight.detach().numpy()[4:], w0[4:])
        assert np.array_equal(head(model).bias.detach().numpy()[4:], b0[4:])
        assert np.allclose(head(model).bias.detach().numpy(), b, atol=1e-5)
    assert not np.allclose(head(a).weight.detach().numpy(), head(plain).weight.detach().numpy(), atol=1e-4)


def test_vrfer_adapt_writes_the_model_and_prints_its_leave_one_person_out_estimate(tmp_path, capsys):
    root = labelled_folder(tmp_path / "setup")
    m = small_model()
    base = tmp_path / "base.safetensors"
    save_model(m, base)
    out = tmp_path / "adapted.safetensors"
    assert main(["adapt", str(root), "--model", str(base), "--face", "none", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert out.is_file() and rep["people"] == 3 and rep["faces"] == 24
    assert 0 <= rep["loo"]["accuracy"] <= 1 and rep["loo"]["n"] == 24
    assert create_model(str(out)).cfg.name == "adapted"
    assert rep["mirror"] is True and create_model(str(out)).cfg.extra["adapted"]["mirror"] is True
    # --no-mirror: the layer learns from the faces as they are (a camera that sees the face from one side)
    one_sided = tmp_path / "one-sided.safetensors"
    assert main(["adapt", str(root), "--model", str(base), "--face", "none", "--out", str(one_sided), "--no-mirror",
                 "--no-estimate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mirror"] is False
    a, b = create_model(str(out)), create_model(str(one_sided))
    assert b.cfg.extra["adapted"]["mirror"] is False
    assert not torch.allclose(head(a).weight, head(b).weight)


def test_adapt_needs_people_to_leave_out(tmp_path):
    root = labelled_folder(tmp_path / "one", people=1)
    from vrfer.personal.adapt import adapt_folder
    said = []
    model, rep = adapt_folder(small_model(), root, face="none", progress=False, log=said.append)
    assert "loo" not in rep          # one person: nothing honest to estimate, and it says so
    assert any("no leave-one-person-out estimate" in line for line in said)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([lines[0], lines[1].rsplit(",", 2)[0] + ",,a"] + lines[2:]))
    with pytest.raises(VrferError, match="labels.csv row 2: no `subject`"):     # one row without its person
        adapt_folder(small_model(), root, face="none", progress=False)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([lines[0].replace(",subject", ",who")] + lines[1:]))
    with pytest.raises(VrferError, match="subject"):
        adapt_folder(small_model(), root, face="none", progress=False)


def test_vrfer_adapt_names_the_photos_without_a_face_it_left_out_and_exits_1(tmp_path, capsys, monkeypatch):
    root = labelled_folder(tmp_path / "setup", people=2, sessions=("a",), classes=(1, 2))
    Image.fromarray(np.full((120, 120), 128, np.uint8)).save(root / "blank.png")
    with open(root / "labels.csv", "a", newline="") as f:
        f.write("blank.png,1,p0,a\n")
    base = tmp_path / "base.safetensors"
    save_model(small_model(), base)
    out = tmp_path / "adapted.safetensors"
    # --face detect on noise finds no face anywhere: every photo left out, nothing to adapt on
    assert main(["adapt", str(root), "--model", str(base), "--out", str(out), "--no-estimate"]) == 2
    capsys.readouterr()
    from vrfer.faces import Face
    # a detector that finds the whole photo a face in every photo but the blank one
    monkeypatch.setattr(Recognizer, "find_faces", lambda self, img: [] if img.std() == 0 else [
        Face((0, 0, img.shape[1], img.shape[0]), 0.9)])
    assert main(["adapt", str(root), "--model", str(base), "--out", str(out), "--no-estimate", "--json"]) == 1
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert out.is_file() and rep["faces"] == 4 and rep["no_face"] == 1 and rep["no_face_files"] == ["blank.png"]
    assert "no face found in 1 images (left out of the adaptation): blank.png" in cap.err


# ------------------------------------------------------------------------------------------ calibration

def test_a_profile_moves_answers_towards_the_persons_classes_and_keeps_the_others():
    m = small_model()
    crops = faces(12)
    logits, feats = logits_and_features(m, crops)
    prof = enrol(m, feats, ["fear"] * 6 + ["anger"] * 6, person="P")
    assert prof.classes == ["anger", "fear"] and prof.counts == {"anger": 6, "fear": 6}
    z = prof.apply(logits, feats, m.cfg.classes)
    keep = [i for i, c in enumerate(m.cfg.classes) if c not in ("anger", "fear")]
    assert np.array_equal(z[:, keep], logits[:, keep].astype(np.float64))
    fear, anger = m.cfg.classes.index("fear"), m.cfg.classes.index("anger")
    assert (z[:6, fear] - z[:6, anger]).mean() > (logits[:6, fear] - logits[:6, anger]).mean()


def test_a_profile_of_an_adapted_model_is_blended_half_way_to_its_own_rows(tmp_path):
    base = small_model()
    adapted = adapt_arrays(base, faces(16, seed=3), np.array([1, 2, 3, 4] * 4))
    _, feats = logits_and_features(adapted, faces(8, seed=4))
    labels = [1, 2, 3, 4] * 2
    full = enrol(adapted, feats, labels, blend=1.0)
    prof = enrol(adapted, feats, labels)
    own = head(adapted).weight.detach().numpy()[full.rows(adapted.cfg.classes)]
    assert prof.blend == 0.5 and enrol(base, feats, labels).blend == 1.0
    adabn_only = adapt_arrays(base, unlabelled=faces(16, seed=5))      # the generic layer kept: no blend
    assert enrol(adabn_only, logits_and_features(adabn_only, faces(8, seed=4))[1], labels).blend == 1.0
    assert np.allclose(prof.weight, 0.5 * full.weight + 0.5 * own, atol=1e-6)
    assert load_profile(prof.save(tmp_path / "p.json")).blend == 0.5


def test_a_profile_saves_and_loads_bit_identical(tmp_path):
    m = small_model()
    _, feats = logits_and_features(m, faces(6))
    prof = enrol(m, feats, [1, 2, 3, 1, 2, 3])
    path = prof.save(tmp_path / "p.json")
    back = load_profile(path)
    assert np.array_equal(back.weight, prof.weight) and np.array_equal(back.bias, prof.bias)
    assert back.to_json() == prof.to_json()
    assert back.model_sha256 == model_fingerprint(m)


def test_profile_refusals_are_one_line(tmp_path, capsys):
    m = small_model()
    _, feats = logits_and_features(m, faces(4))
    prof = enrol(m, feats, [1, 2, 1, 2])
    other = small_model(seed=1)
    with pytest.raises(VrferError, match="not for"):
        prof.check_model(other.cfg, model_fingerprint(other))
    d = prof.to_json()
    bad = tmp_path / "bad.json"
    for broken, why in [({**d, "format": "x"}, "not a vrfer profile"), ({**d, "bias": [1.0]}, "rows"),
                        ({k: v for k, v in d.items() if k != "weight"}, "weight"),
                        ({**d, "weight": [[float("nan")] * len(d["weight"][0])] * 2}, "finite"),
                        ({**d, "blend": 1.5}, "blend"), ({**d, "blend": "abc"}, "blend"), ({**d, "blend": True}, "blend"),
                        ({**d, "lam": "0.1"}, "lam")]:
        bad.write_text(json.dumps(broken))
        with pytest.raises(VrferError, match=why):
            load_profile(bad)
    bad.write_text("{not json")
    with pytest.raises(VrferError, match="damaged"):
        load_profile(bad)
    d2 = {**d, "classes": ["happiness", "joy"]}
    bad.write_text(json.dumps(d2))
    with pytest.raises(VrferError, match="joy"):
        load_profile(bad).check_model(m.cfg, model_fingerprint(m))
    # through the command line: the bundled model refuses a profile of another model, exit 2, one line
    good = prof.save(tmp_path / "small.json")
    img = tmp_path / "f.png"
    Image.fromarray(faces(1)[0]).save(img)
    assert main(["predict", str(img), "--face", "none", "--profile", str(good)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "profile made for model" in err[0]


def test_vrfer_calibrate_makes_the_profile_predict_uses(tmp_path, capsys):
    m = small_model()
    model = tmp_path / "m.safetensors"
    save_model(m, model)
    imgs = []
    for i, arr in enumerate(faces(4)):
        imgs.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(imgs[-1])
    prof = tmp_path / "me.json"
    assert main(["calibrate", f"happiness={imgs[0]}", f"sadness={imgs[1]}", "--model", str(model), "--face", "none",
                 "--out", str(prof)]) == 0
    assert load_profile(prof).counts == {"happiness": 1, "sadness": 1}
    capsys.readouterr()
    rec = Recognizer(str(model), face="none", profile=prof)
    api = rec.predict(imgs[2])[0].probs
    assert main(["predict", str(imgs[2]), "--model", str(model), "--face", "none", "--profile", str(prof),
                 "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.splitlines()[0])["probs"]
    assert max(abs(api[c] - cli[c]) for c in api) < 1e-6
    plain = Recognizer(str(model), face="none", backend="torch").predict(imgs[2])[0].probs
    assert max(abs(api[c] - plain[c]) for c in api) > 1e-6         # the profile changed the answer
    assert main(["calibrate", f"joy={imgs[0]}", "--model", str(model), "--out", str(prof)]) == 2
    # a video that cannot be read, or without a face in any frame: one line naming it, exit 2
    fake = tmp_path / "smile.mp4"
    fake.write_text("not a video")
    capsys.readouterr()
    assert main(["calibrate", f"happiness={fake}", "--model", str(model), "--out", str(prof)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(fake) in err[0] and "cannot open video" in err[0]
    import cv2
    blank = tmp_path / "blank.avi"
    w = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for _ in range(3):
        w.write(np.full((96, 96, 3), 128, np.uint8))
    w.release()
    assert main(["calibrate", f"happiness={blank}", "--model", str(model), "--out", str(prof)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blank) in err[0] and "no face found in any of its 3 frames" in err[0]
    from vrfer.errors import NoFaceError      # an image given as pixels is named by its class, once
    with pytest.raises(NoFaceError, match="^a happiness image: no face found$"):
        Recognizer(str(model), face="detect").enrol({"happiness": [np.full((96, 96), 128, np.uint8)]})
    # --folder with a row naming a missing image: stops naming it, or with --skip-bad counts it
    folder = labelled_folder(tmp_path / "me", people=1, sessions=("a",), classes=(1, 2))
    with open(folder / "labels.csv", "a", newline="") as f:
        f.write("gone.png,1,p0,a\n")
    assert main(["calibrate", "--folder", str(folder), "--model", str(model), "--face", "none",
                 "--out", str(prof)]) == 2
    assert "gone.png" in capsys.readouterr().err
    assert main(["calibrate", "--folder", str(folder), "--model", str(model), "--face", "none", "--skip-bad",
                 "--out", str(prof)]) == 0
    assert "skipped 1 rows of labels.csv: missing_image 1" in capsys.readouterr().err


def test_an_adapted_model_file_with_a_damaged_last_layer_is_refused_in_one_line(tmp_path):
    """vrfer.personal.profile_check.check_head, wired where a model file is read: an adapted layer a user brings."""
    from dataclasses import replace
    m = small_model()
    with torch.no_grad():
        m.classifier.weight[0, 0] = float("inf")
    m.cfg = replace(m.cfg, extra={**m.cfg.extra, "adapted": {"faces": 3}})
    bad = tmp_path / "adapted.safetensors"
    save_model(m, bad)
    with pytest.raises(VrferError, match="damaged adapted model"):
        from vrfer.models.registry import load_checkpoint
        load_checkpoint(bad)


# ------------------------------------------------------------------------------- honest evaluation

def test_no_face_is_scored_by_a_fit_that_saw_its_person_or_session(tmp_path, monkeypatch):
    import vrfer.personal.evaluate_personal as ep
    from vrfer.evaluate import folder_faces
    from vrfer.personal.evaluate_personal import evaluate_personal
    root = labelled_folder(tmp_path / "set", people=3, sessions=("a", "b", "c"))
    m = small_model()
    items, crops, found, _, _ = folder_faces(m, root, "none", progress=False)
    by_crop = {c.tobytes(): it.path.name for it, c in zip(items, crops)}
    feats = logits_and_features(m, crops)[1]
    fitted_people, enrolled = [], []
    real_adapt, real_enrol = ep.adapt_arrays, ep.enrol

    def spy_adapt(model, c, labels, *a, **k):
        fitted_people.append({by_crop[x.tobytes()].split("_")[0] for x in c})
        return real_adapt(model, c, labels, *a, **k)

    def spy_enrol(model, f, labels, *a, **k):
        enrolled.append(f)
        return real_enrol(model, f, labels, *a, **k)

    monkeypatch.setattr(ep, "adapt_arrays", spy_adapt)     # where evaluate_personal looks them up
    monkeypatch.setattr(ep, "enrol", spy_enrol)
    res = evaluate_personal(m, root, "none", adapt="loo", calibrate=1, draws=2, progress=False)
    # three fits, each on the two people it does not score
    assert sorted(map(sorted, fitted_people)) == [["p0", "p1"], ["p0", "p2"], ["p1", "p2"]]
    assert res["adapted_loo"]["n"] == 36 and res["calibration"]["enrolments"] == 9
    # without adaptation the profiles start from the generic model's representation: name each enrolled face
    enrolled.clear()
    res = evaluate_personal(m, root, "none", calibrate=1, draws=1, progress=False)
    names = {f.tobytes(): it.path.name for it, f in zip(items, feats)}
    sessions = [{names[x.tobytes()].split("_")[1] for x in f} for f in enrolled]
    assert all(len(s) == 1 for s in sessions)                      # each profile from ONE session
    # each person-session enrolment scores 2 other sessions x 4 classes = 8 faces, never its own
    assert res["calibration"]["calibrated"]["n"] == 9 * 8


def test_calibration_needs_people_and_says_when_photos_are_one_sitting(tmp_path):
    from vrfer.personal.evaluate_personal import evaluate_personal
    root = labelled_folder(tmp_path / "sit", people=2, sessions=("x",), per=2)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([l.rsplit(",", 1)[0] for l in lines]) + "\n")   # no session column
    res = evaluate_personal(small_model(), root, "none", calibrate=1, draws=1, progress=False)
    assert "one sitting" in res["calibration"]["sessions"]
    assert res["calibration"]["calibrated"]["n"] == 2 * 4        # per person: the other photo of each class


# ------------------------------------------------------------------------------------------- real data

@pytest.mark.slow
@needs_data(TAIWANESE / "labels.csv")
def test_taiwanese_dev_figures_hold(tmp_path):
    """The figures in docs/RESULTS.md ("Adaptation and calibration"), within a few points."""
    from vrfer.personal.evaluate_personal import evaluate_personal
    res = evaluate_personal("vrfer-lower", TAIWANESE, "detect", "headset", adapt="loo", calibrate=1, draws=1,
                            progress=False)
    assert res["n"] == 628
    assert abs(res["generic"]["accuracy"] - 0.387) < 0.03
    assert abs(res["adapted_loo"]["accuracy"] - 0.545) < 0.04
    cal = res["calibration"]
    assert cal["always_enrolled_sessions"] == ["neutral"]
    # on top of adaptation the half-way blend gains a little (RESULTS: 55.1% -> 56.8%) and must not lose
    gain = cal["calibrated"]["accuracy"] - cal["unprofiled"]["accuracy"]
    assert -0.01 < gain < 0.08
