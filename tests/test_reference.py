"""The wearer's neutral reference (vrfer.personal.reference), as specifications: a face is read as a change from the
person's neutral face only when a reference is given or learnt; without one nothing changes; a reference never
holds the face it scores; the automatic one answers as the generic model until it has seen the wearer relaxed;
profiles carry a reference bound to the model's weights; every surface gives one answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vrfer.personal.calibration import enrol
from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.fingerprint import model_fingerprint, weights_fingerprint
from vrfer.models import create_model
from vrfer.models.registry import load_checkpoint, save_model
from vrfer.inference.pipeline import Pipeline
from vrfer.inference.postprocess import softmax
from vrfer.personal.profile_check import check_profile
from vrfer.recognizer import Recognizer
from vrfer.personal.reference import (
    AUTO_WARMUP,
    ReferencedHead,
    RunningReference,
    fit_head_on_people,
    head_of,
    leave_one_out_references,
    person_references,
    with_head,
)
from vrfer.inference.representation import head, logits_and_features

from test_adapt_calibrate import labelled_folder


def small_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").eval()


def referenced_model(tmp_path, seed: int = 0):
    """A small model file with a referenced head fitted on a labelled noise folder (neutral = class 0)."""
    m = small_model(seed)
    root = labelled_folder(tmp_path / "people", people=3, sessions=("a", "b"), classes=(0, 1, 2, 3))
    from vrfer.personal.adapt import fit_reference_head
    h = fit_reference_head(m, [root], face="none", occlusion="none", progress=False)
    path = tmp_path / "ref.safetensors"
    save_model(m, path, with_head(m.cfg, h))
    return path, m, root


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ the arithmetic

def test_the_referenced_answer_blends_the_generic_and_the_change_from_the_reference():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(8, 5)), rng.normal(size=8)
    h = ReferencedHead(w, b, blend=0.7)
    logits, feats, ref = rng.normal(size=(3, 8)), rng.normal(size=(3, 5)), rng.normal(size=5)
    want = 0.3 * np.log(softmax(logits)) + 0.7 * np.log(softmax((feats - ref) @ w.T + b))
    assert np.allclose(h.logits(logits, feats, ref), want)
    # one reference row per face: a NaN row keeps the model's answer for that face
    refs = np.stack([ref, np.full(5, np.nan), ref])
    got = softmax(h.logits(logits, feats, refs))
    assert np.allclose(got[1], softmax(logits[1:2])[0]) and np.allclose(got[0], softmax(want[:1])[0])


def test_the_head_lives_in_the_config_and_leaves_the_weights_and_their_fingerprint(tmp_path):
    path, m, _ = referenced_model(tmp_path)
    plain = tmp_path / "plain.safetensors"
    save_model(m, plain)
    assert weights_fingerprint(path) == weights_fingerprint(plain) == model_fingerprint(m)
    h = head_of(load_checkpoint(path).cfg, head(m).in_features)
    assert h.weight.shape == (8, head(m).in_features) and h.fitted_on[0]["people"] == 3
    assert head_of(load_checkpoint(plain).cfg) is None


def test_a_damaged_head_in_a_model_file_is_refused_in_one_line(tmp_path):
    m = small_model()
    d = ReferencedHead(np.zeros((8, 4)), np.zeros(8)).to_json()
    d["weight"][2][1] = 1e300
    from dataclasses import replace
    cfg = replace(m.cfg, extra={**m.cfg.extra, "reference_head": d})
    with pytest.raises(VrferError, match="damaged referenced head"):
        head_of(cfg)


def test_a_reference_never_holds_the_face_it_scores():
    feats = np.zeros((6, 3))
    feats[2] = 100.0                           # a face far from the others
    subjects = np.array(["a", "a", "a", "a", "b", "b"])
    use = np.ones(6, bool)
    refs = leave_one_out_references(feats, subjects, use)
    assert np.allclose(refs[2], 0.0)           # its own value is not in its reference
    assert np.allclose(refs[0], 100.0 / 3)     # the others' references hold it
    assert np.allclose(refs[4], 0.0) and np.allclose(refs[5], 0.0)   # person b never sees person a
    # with sessions: only the person's OTHER sessions; none there -> NaN (no reference, the generic answer)
    sessions = np.array(["s1", "s1", "s2", "s2", "s1", "s1"])
    refs = leave_one_out_references(feats, subjects, use, sessions)
    assert np.allclose(refs[0], 50.0) and np.allclose(refs[2], 0.0)
    assert np.isnan(refs[4]).all()
    # "neutral" takes the person's other neutral faces; "auto" those the generic answer calls neutral
    labels = np.array([0, 0, 1, 1, 0, 1])
    logits = np.zeros((6, 8))
    logits[:, 0] = [5, -5, 5, -5, 5, 5]
    classes = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    neutral = person_references(feats, logits, labels, subjects, None, "neutral", classes)
    auto = person_references(feats, logits, labels, subjects, None, "auto", classes)
    assert np.allclose(neutral[2], 0.0) and np.allclose(auto[0], 100.0)   # auto: faces 0 and 2 look neutral


def test_the_automatic_reference_waits_for_the_wearer_relaxed_then_follows_slowly():
    classes = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    relaxed, smiling = np.eye(8)[0] * 0.9 + 0.0125, np.eye(8)[1] * 0.9 + 0.0125
    run = RunningReference(classes, warmup=3, rate=0.5)
    # expressive frames do not count; neutral-looking ones do, and a frame is never read against itself
    assert run.observe(np.full(2, 9.0), smiling) is None
    for v in (1.0, 2.0):
        assert run.observe(np.full(2, v), relaxed) is None
    assert run.observe(np.full(2, 3.0), relaxed) is None          # the third completes the warm-up ...
    assert np.allclose(run.observe(np.full(2, 7.0), relaxed), 2.0)   # ... and is used from the next frame on
    assert np.allclose(run.vector, 4.5)                            # then a slow update: 2 + 0.5 * (7 - 2)
    run.reset()
    assert run.vector is None and not run.settled


def test_during_warm_up_the_answer_is_the_generic_one(tmp_path):
    path, m, _ = referenced_model(tmp_path)
    pipe = Pipeline(str(path), face="none", backend="torch")
    crops = faces(AUTO_WARMUP + 5)
    logits, feats = logits_and_features(m, crops)
    run = RunningReference(pipe.classes, threshold=0.0)           # every frame counts: settles after AUTO_WARMUP
    answers = [pipe.answer(logits[i:i + 1], feats[i:i + 1], None, run)[0] for i in range(len(crops))]
    generic = softmax(logits)
    assert np.allclose(answers[:AUTO_WARMUP], generic[:AUTO_WARMUP])
    assert not np.allclose(answers[AUTO_WARMUP + 1:], generic[AUTO_WARMUP + 1:])


# ---------------------------------------------------------------------------------------------- profiles

def test_a_neutral_enrolment_makes_a_reference_only_profile_bound_to_the_weights(tmp_path):
    path, m, _ = referenced_model(tmp_path)
    crops = faces(4)
    feats = logits_and_features(m, crops)[1]
    prof = enrol(m, feats, ["neutral"] * 4)
    assert prof.classes == [] and prof.reference_count == 4
    assert np.allclose(prof.reference, feats.mean(axis=0), atol=1e-6)
    f = tmp_path / "me.json"
    prof.save(f)
    back = check_profile(f, m.cfg, head(m).in_features, model_fingerprint(m))
    assert np.array_equal(back.reference, prof.reference)
    # a profile with a reference read by the pipeline: used for the wearer, no rows changed
    pipe = Pipeline(str(path), face="none", backend="torch", profile=f)
    assert np.array_equal(pipe.reference, prof.reference)
    # from another model: refused
    other = small_model(seed=1)
    with pytest.raises(VrferError, match="calibrate again with this model"):
        check_profile(f, other.cfg, head(other).in_features, model_fingerprint(other))


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(reference=d["reference"][:-1]), "expected (the model's representation width)"),
    (lambda d: d.update(reference=[float("nan")] * len(d["reference"])), "finite"),
    (lambda d: d["reference"].__setitem__(0, 1e39), "finite"),
    (lambda d: d.update(reference="zeros"), "list of numbers"),
])
def test_a_hand_edited_reference_is_refused_in_one_line(tmp_path, damage, message, capsys):
    path, m, _ = referenced_model(tmp_path)
    prof = enrol(m, logits_and_features(m, faces(2))[1], ["neutral"] * 2).to_json()
    damage(prof)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(prof))
    img = tmp_path / "x.png"
    Image.fromarray(faces(1)[0]).save(img)
    rc = main(["predict", str(img), "--model", str(path), "--face", "none", "--reference", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "bad.json" in err[0]
    assert message in err[0], err[0]


def test_a_model_without_a_referenced_head_refuses_an_explicit_reference_and_defaults_to_off(tmp_path, capsys):
    m = small_model()
    plain = tmp_path / "plain.safetensors"
    save_model(m, plain)
    with pytest.raises(VrferError, match="no referenced head"):
        Recognizer(str(plain), face="none", reference="auto")
    assert Recognizer(str(plain), face="none").reference_mode == "off"
    img = tmp_path / "x.png"
    Image.fromarray(faces(1)[0]).save(img)
    assert main(["predict", str(img), "--model", str(plain), "--face", "none"]) == 0   # the default: off here


# ------------------------------------------------------------------------------------------- one answer

def test_no_reference_changes_nothing_and_a_photo_is_not_a_stream(tmp_path):
    path, m, _ = referenced_model(tmp_path)
    img = faces(1, seed=3)[0]
    off = Recognizer(str(path), face="none", backend="torch", reference="off").predict(img)[0].probs
    auto = Recognizer(str(path), face="none", backend="torch", reference="auto")
    for _ in range(AUTO_WARMUP + 3):                 # photo after photo: each its own, never a stream
        assert auto.predict(img)[0].probs == off
    assert auto.reference is None


def test_the_same_frames_and_reference_give_the_same_answer_through_the_api_the_cli_and_onnx(tmp_path, capsys):
    path, m, _ = referenced_model(tmp_path)
    crops = faces(3, seed=5)
    prof = enrol(m, logits_and_features(m, crops[:2])[1], ["neutral"] * 2)
    pfile = tmp_path / "me.json"
    prof.save(pfile)
    img = tmp_path / "x.png"
    Image.fromarray(crops[2]).save(img)
    api = Recognizer(str(path), face="none", backend="torch", reference=pfile).predict(img)[0].probs
    plain = Recognizer(str(path), face="none", backend="torch", reference="off").predict(img)[0].probs
    assert max(abs(api[c] - plain[c]) for c in api) > 1e-4          # the reference changed the answer
    assert main(["predict", str(img), "--model", str(path), "--face", "none", "--backend", "torch",
                 "--reference", str(pfile), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.splitlines()[0])["probs"]
    assert max(abs(api[c] - cli[c]) for c in api) < 1e-6
    # the same through the ONNX backend: the head travels in the exported file's config
    onnx = Recognizer(str(path), face="none", backend="onnx", reference=pfile).predict(img)[0].probs
    assert max(abs(api[c] - onnx[c]) for c in api) < 1e-4
    # and by hand, as examples/onnx_client.py and the model card do it
    lg, ft = logits_and_features(m, crops[2:])
    h = head_of(load_checkpoint(path).cfg)
    by_hand = softmax(h.logits(lg, ft, prof.reference))[0]
    assert np.allclose([api[c] for c in m.cfg.classes], by_hand, atol=1e-6)


def test_evaluate_reference_scores_each_face_against_its_persons_other_photos(tmp_path, capsys):
    path, m, root = referenced_model(tmp_path)
    other = labelled_folder(tmp_path / "others", people=2, sessions=("a", "b"), classes=(0, 1, 2, 3), seed=7)
    assert main(["evaluate", "--dataset", "folder", "--root", str(other), "--model", str(path), "--face", "none",
                 "--occlusion", "none", "--reference", "neutral", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["referenced"]["reference"] == "neutral" and res["head_saw_this_data"] is False
    assert res["accuracy"] == res["referenced"]["accuracy"] and "generic" in res
    assert res["referenced"]["n"] == res["generic"]["n"] == 16
    # each neutral photo's only other-session neutral photo is its reference; there is one for each here
    assert res["referenced"]["no_reference"] == 0
    # scored on the data its head was fitted on: said, in the JSON and in words
    assert main(["evaluate", "--dataset", "folder", "--root", str(root), "--model", str(path), "--face", "none",
                 "--occlusion", "none", "--reference", "auto"]) == 0
    assert "fitted on this data" in capsys.readouterr().out
    # ... whatever vrfer draws on the photos: the fingerprint is of the photos on disk
    assert main(["evaluate", "--dataset", "folder", "--root", str(root), "--model", str(path), "--face", "none",
                 "--occlusion", "headset", "--reference", "auto"]) == 0
    assert "fitted on this data" in capsys.readouterr().out
    plain = tmp_path / "plain.safetensors"
    save_model(m, plain)
    assert main(["evaluate", "--dataset", "folder", "--root", str(other), "--model", str(plain), "--face", "none",
                 "--occlusion", "none", "--reference", "neutral"]) == 2
    assert "no referenced head" in capsys.readouterr().err


def test_the_shipped_head_was_fitted_on_the_clean_photos_of_both_sets_as_results_says():
    # docs/RESULTS.md's command (tools/fit_reference_head.py's default --occlusion none): the head learns the change
    # from the clean photos; vrfer's synthetic headset, drawn per photo, would teach it the drawing's jitter
    from vrfer.inference.loader import torch_model
    from vrfer.personal.adapt import fit_reference_head
    import inspect
    h = head_of(torch_model("vrfer-lower").cfg)
    assert [(d["data"], d["face"], d["occlusion"]) for d in h.fitted_on] == [
        ("taiwanese-dev", "detect", "none"), ("jaffe", "detect", "none")]
    assert inspect.signature(fit_reference_head).parameters["occlusion"].default == "none"


def test_fitting_a_head_needs_people_with_other_neutral_faces():
    m = small_model()
    feats = np.random.default_rng(0).normal(size=(4, head(m).in_features))
    with pytest.raises(VrferError, match="neutral"):
        fit_head_on_people(m, feats, np.array([1, 2, 1, 2]), np.array(["a", "a", "b", "b"]))


def test_adapt_fits_the_setups_referenced_head_where_its_people_have_neutral_photos(tmp_path, capsys):
    path, m, _ = referenced_model(tmp_path)
    with_neutral = labelled_folder(tmp_path / "setup", people=2, sessions=("a", "b"), classes=(0, 1, 2), seed=3)
    out = tmp_path / "adapted.safetensors"
    assert main(["adapt", str(with_neutral), "--model", str(path), "--face", "none", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "fitted a referenced head" in said.err + said.out
    h = head_of(load_checkpoint(out).cfg)
    assert h is not None and h.fitted_on[0]["people"] == 2
    assert not np.allclose(h.weight, head_of(load_checkpoint(path).cfg).weight)   # refitted, not inherited
    # no neutral photos: the base's head reads another representation (AdaBN changed it), so none is kept
    no_neutral = labelled_folder(tmp_path / "setup2", people=2, sessions=("a",), classes=(1, 2), seed=4)
    out2 = tmp_path / "adapted2.safetensors"
    assert main(["adapt", str(no_neutral), "--model", str(path), "--face", "none", "--out", str(out2)]) == 0
    assert head_of(load_checkpoint(out2).cfg) is None


def test_the_api_enrols_a_neutral_face_and_a_video_stream_learns_the_reference(tmp_path):
    import cv2
    path, m, _ = referenced_model(tmp_path)
    crops = faces(3, seed=9)
    rec = Recognizer(str(path), face="none", backend="torch")
    prof = rec.enrol({"neutral": [crops[0], crops[1]]})
    assert prof.classes == [] and rec.reference_mode == "fixed"
    assert np.allclose(rec.reference, logits_and_features(m, crops[:2])[1].mean(axis=0), atol=1e-5)
    # a video of one relaxed face: the automatic reference settles after AUTO_WARMUP neutral-looking frames
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (48, 48))
    for _ in range(AUTO_WARMUP + 5):
        w.write(cv2.cvtColor(crops[2], cv2.COLOR_GRAY2BGR))
    w.release()
    auto = Recognizer(str(path), face="none", backend="torch", reference="auto")
    auto.session.running.threshold = 0.0         # every frame counts as neutral-looking (a random model says little)
    list(auto.video(str(video)))
    assert auto.session.running.settled and auto.reference_mode == "auto"

