"""One session path (vrfer.inference.session.Session), as specifications: the API's Recognizer and each serve connection
answer a wearer's frames through the same object, so a profile, a reference (fixed or automatic), a calibration,
the prior and smoothing behave alike everywhere; serve adds only transport."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from vrfer.faces import Face
from vrfer.inference.pipeline import Pipeline
from vrfer.recognizer import Recognizer
from vrfer.inference.session import ModelFace, Session

from test_reference import faces, referenced_model

SRC = Path(__file__).resolve().parents[1] / "src" / "vrfer"


def seen(pipe: Pipeline, crops: np.ndarray, held: bool = False, representation: bool = True) -> list[ModelFace]:
    """The faces of one frame as the model saw them (face="none": each crop is a whole image)."""
    probs, logits, feats = pipe.model_outputs(crops, representation)
    return [ModelFace(Face((0, 0, 48, 48), held=held), probs[i], None if logits is None else logits[i],
                      None if feats is None else feats[i], crops[i]) for i in range(len(crops))]


def test_the_api_and_a_serve_connection_hold_the_same_session():
    from vrfer.serve import app, connection
    for path in (SRC / "serve" / name for name in ("app.py", "connection.py", "engine.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        # serve neither smooths, nor learns a reference, nor fits a profile itself: the session does
        assert not names & {"Smoother", "RunningReference", "enrol", "PostProcess"}, path.name
    assert app.WearerSession is connection.WearerSession is Session
    assert isinstance(Recognizer("vrfer-lower", face="none").session, Session)


def test_a_calibration_captured_from_frames_is_the_profile_the_api_enrols_from_the_same_faces(tmp_path):
    path, _, _ = referenced_model(tmp_path)
    crops = faces(6, seed=2)
    labels = ["neutral", "neutral", "happiness", "happiness", "sadness", "sadness"]
    pipe = Pipeline(str(path), face="none", backend="torch")
    s = Session(pipe)
    for crop, label in zip(crops, labels):         # serve's way: capture one frame of each expression
        s.start_capture(label, 1)
        s.answer(seen(pipe, crop[None]))
        assert s.just_captured == label and s.capture is None
    captured = s.finish(person="p")
    rec = Recognizer(str(path), face="none", backend="torch")
    enrolled = rec.enrol([(c, lbl) for c, lbl in zip(crops, labels)], person="p")
    same = {k: v for k, v in captured.to_json().items() if k != "created"}
    assert same == {k: v for k, v in enrolled.to_json().items() if k != "created"}
    # the profile is in use from then on, as the API's, and its neutral faces gave the fixed reference
    assert s.profile is captured and s.reference_mode == "fixed"
    np.testing.assert_array_equal(s.reference, enrolled.reference)


def test_a_held_face_is_neither_captured_nor_learnt_from():
    pipe = Pipeline("vrfer-lower", face="none", backend="torch")
    s = Session(pipe, reference="auto")
    s.running.threshold = 0.0                       # every face counts as neutral-looking
    crop = faces(1, seed=1)
    s.start_capture("neutral", 3)
    s.answer(seen(pipe, crop, held=True))
    assert s.running.count == 0 and s.captured[1] == []
    s.answer(seen(pipe, crop))
    assert s.running.count == 1 and s.captured[1] == ["neutral"]


def test_a_lost_face_restarts_the_automatic_reference_and_a_photo_is_not_a_stream():
    pipe = Pipeline("vrfer-lower", face="none", backend="torch")
    s = Session(pipe, reference="auto")
    s.running.threshold = 0.0
    crop = faces(1, seed=1)
    assert not s.wants_representation(stream=False)
    s.answer(seen(pipe, crop, representation=False), stream=False)     # a photo on its own
    assert s.running.count == 0
    s.answer(seen(pipe, crop))
    s.answer(seen(pipe, crop), channel="source")    # a broadcast camera's frame: not this wearer's own stream
    assert s.running.count == 1
    s.answer([])                                    # no face in the stream's frame
    assert s.running.count == 0


def test_smoothing_is_kept_per_channel_and_off_without_alpha():
    pipe = Pipeline("vrfer-lower", face="none", backend="torch")
    a, b = faces(2, seed=4)
    s = Session(pipe, alpha=0.5)
    first = s.answer(seen(pipe, a[None], representation=False))[0]
    other = s.answer(seen(pipe, b[None], representation=False), channel="source")[0]
    assert other.smoothed == other.probs            # its own channel: a first frame
    second = s.answer(seen(pipe, b[None], representation=False))[0]
    want = {c: 0.5 * second.probs[c] + 0.5 * first.probs[c] for c in pipe.classes}
    assert all(abs(second.smoothed[c] - want[c]) < 1e-9 for c in pipe.classes)
    assert Session(pipe).answer(seen(pipe, a[None], representation=False))[0].smoothed is None
