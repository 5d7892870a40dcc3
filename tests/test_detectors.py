"""Specification of the face detector registry (vrfer.faces.registry): every registered detector gives what the
FaceDetector protocol asks, and a detector registered from outside (a toy here, which knows nothing of faces) runs
through the API, the tracker and `vrfer predict --detector` by its name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_tracking import FACE, canvas_with_face, photos, write_video

from vrfer.cli import main
from vrfer.errors import VrferError
from vrfer.faces import (
    DEFAULT_DETECTOR,
    Face,
    FaceDetector,
    create_detector,
    find_in_region,
    get_detector,
    iou,
    list_detectors,
    register_detector,
)
from vrfer.faces import registry as registry_module
from vrfer.recognizer import Recognizer

BACKGROUND = (70, 80, 90)      # canvas_with_face's canvas


def test_the_bundled_detectors_are_registered_and_retinaface_is_the_default():
    assert {"retinaface", "blazeface"} <= set(list_detectors()) and DEFAULT_DETECTOR == "retinaface"
    assert type(get_detector(threads=1)).__name__ == "RetinaFaceDetector"
    assert get_detector("retinaface", threads=1) is get_detector(threads=1)      # shared, once per settings
    with pytest.raises(VrferError, match="face detector 'nope': expected one of blazeface, retinaface"):
        create_detector("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("retinaface", lambda threads=None: None)


@pytest.mark.parametrize("name", list_detectors())
def test_every_registered_detector_gives_faces_as_the_protocol_asks(name):
    """As timm's tests iterate list_models(): each detector, on the sample headset photos pasted on a canvas,
    returns Faces in the image, best first, and finds the face of at least one photo."""
    det = create_detector(name, threads=1)
    assert isinstance(det, FaceDetector)
    found = 0
    for photo in photos():
        frame = canvas_with_face(photo, 200, 120)
        faces = det.detect(frame)
        assert all(isinstance(f, Face) for f in faces)
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
        found += any(iou(f.box, (200, 120, FACE, FACE)) > 0.3 for f in faces)
    assert found >= 1


class PatchDetector:
    """A toy detector that knows nothing of faces: it boxes the part of the image that differs from the canvas
    colour (the pasted photo) and reports a fixed box inside it (`rel`: x, y, w, h as shares of the patch).
    No in_region, no detect_photo: the tracker and the pipeline fall back to detect. `shapes`: the image sizes
    it was asked about."""

    def __init__(self, rel, score: float = 0.9):
        self.rel, self.score, self.shapes = rel, score, []

    def detect(self, image: np.ndarray) -> list[Face]:
        self.shapes.append(image.shape[:2])
        ys, xs = np.nonzero(np.abs(image.astype(int) - BACKGROUND).max(2) > 12)
        if len(xs) == 0:
            return []
        x0, y0, w, h = xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()
        rx, ry, rw, rh = self.rel
        return [Face((float(x0 + rx * w), float(y0 + ry * h), float(rw * w), float(rh * h)), self.score,
                     detector="patch")]


@pytest.fixture(scope="module")
def rel():
    """Where RetinaFace boxes the first sample photo's face in its patch (so that the toy's crop is a face's, which
    the model's mouth check accepts), as shares of the patch."""
    frame = canvas_with_face(photos()[0], 200, 120)
    x, y, w, h = get_detector(threads=1).detect(frame)[0].box
    return ((x - 200) / FACE, (y - 120) / FACE, w / FACE, h / FACE)


@pytest.fixture
def registered(monkeypatch, rel):
    """The toy registered as "patch" for this test only."""
    monkeypatch.setattr(registry_module, "_FACTORIES", dict(registry_module._FACTORIES))
    monkeypatch.setattr(registry_module, "_SHARED", {})
    register_detector("patch", lambda threads=None: PatchDetector(rel))
    return "patch"


def test_the_generic_region_look_maps_the_detectors_boxes_back_into_the_image(rel):
    det = PatchDetector(rel)
    frame = canvas_with_face(photos()[0], 200, 120)
    whole = det.detect(frame)[0].box
    # a square around the face, scaled up 1.5x: the toy sees it at another size and place
    found = find_in_region(det, frame, 160, 80, 320, 480, threshold=0.5)
    assert det.shapes[-1] == (480, 480) and len(found) == 1
    # the same box, but for the toy's own edge, which the interpolation moves by up to a pixel of the scaled square
    # on each side (1% of the face); a box left in the square's pixels, or not scaled back, is tens of pixels off
    assert np.abs(np.subtract(found[0].box, whole)).max() <= 0.01 * FACE
    assert find_in_region(det, frame, 160, 80, 320, 480, threshold=0.95) == []   # below the threshold


def test_a_toy_detector_runs_through_the_api_with_tracking(rel):
    photo = photos()[0]
    frames = [canvas_with_face(photo, 60 + 9 * i, 100 + i) for i in (0, 0, 0, 1, 2, 3, 4, 5)]
    det = PatchDetector(rel)
    rec = Recognizer(detector=det, threads=1)
    assert rec.detector is det
    answers = [rec.predict(f, track=True, stream=True) for f in frames]
    assert all(len(a) == 1 for a in answers)
    # the tracker followed the face through region looks (detect on a cut-out square), not whole-frame searches
    assert sum(s != frames[0].shape[:2] for s in det.shapes) >= len(frames) - 1
    assert answers[0][0].box == answers[1][0].box == answers[2][0].box     # still: one box
    for i, a in zip((0, 0, 0, 1, 2, 3, 4, 5), answers):                    # moving: followed
        truth = det.detect(canvas_with_face(photo, 60 + 9 * i, 100 + i))[0].box
        assert iou(a[0].box, truth) > 0.7


def test_a_registered_detector_is_chosen_by_name_in_the_api_and_predict(registered, rel, capfd, tmp_path):
    photo = photos()[0]
    frames = [canvas_with_face(photo, 60 + 9 * i, 100 + i) for i in range(6)]
    by_name = Recognizer(detector=registered, threads=1)
    assert isinstance(by_name.detector, PatchDetector)
    by_object = Recognizer(detector=PatchDetector(rel), threads=1)
    for f in frames:
        a, b = by_name.predict(f, track=True, stream=True), by_object.predict(f, track=True, stream=True)
        assert [(p.box, p.probs) for p in a] == [(p.box, p.probs) for p in b]
    video = write_video(tmp_path / "clip.avi", frames)
    capfd.readouterr()
    assert main(["predict", str(video), "--detector", registered, "--json", "--threads", "1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert len(rows) == len(frames) and all(r["box"] for r in rows)
    with pytest.raises(SystemExit) as e:                                  # not registered: a usage error
        main(["predict", str(video), "--detector", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capfd.readouterr().err


def test_naming_the_default_detector_changes_no_answer(tmp_path):
    frame = canvas_with_face(photos()[1], 200, 120)
    answers = [[(p.box, p.probs) for p in Recognizer(detector=d, threads=1).predict(frame)]
               for d in (None, DEFAULT_DETECTOR)]
    assert answers[0] == answers[1] and len(answers[0]) == 1
