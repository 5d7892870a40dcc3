"""The keypoint crop (vrfer.faces.keypoint_square / face_square): the FER+ square placed from the nose, which a
headset leaves visible, on constructed boxes and landmarks: upright, tilted, behind a headset, and the box's
square where the keypoints are missing or implausible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vrfer.errors import VrferError
from vrfer.faces import (KP_CENTRE, KP_SIDE_PER_WIDTH, Face, align_crop, face_roll, face_square,
                         keypoint_square, square_box)
from vrfer.inference.pipeline import crop_faces

BOX = (100.0, 50.0, 80.0, 110.0)
NOSE = np.array([140.0, 115.0])
# eyes, nose, mouth corners of an upright face in BOX (RetinaFace's order: image left first)
UPRIGHT = np.array([[122.0, 90.0], [158.0, 90.0], NOSE, [126.0, 138.0], [154.0, 138.0]])


def rotated(pts: np.ndarray, degrees: float, about=NOSE) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (pts - about) @ rot.T + about


def centre(square) -> np.ndarray:
    x, y, side = square
    return np.array([x + side / 2, y + side / 2])


def test_an_upright_face_gets_the_fitted_square_around_its_nose():
    x, y, side = keypoint_square(BOX, UPRIGHT)
    assert side == pytest.approx(KP_SIDE_PER_WIDTH * BOX[2])
    assert np.allclose(centre((x, y, side)), NOSE + np.array(KP_CENTRE) * side)
    assert face_roll(UPRIGHT) == pytest.approx(0.0)


def test_a_headset_that_pushes_the_box_top_down_does_not_move_the_square():
    headset_box = (100.0, 75.0, 80.0, 85.0)       # same width, top moved down behind the headset
    assert np.allclose(keypoint_square(headset_box, UPRIGHT), keypoint_square(BOX, UPRIGHT))


@pytest.mark.parametrize("degrees", [-30.0, 15.0, 30.0])
def test_a_tilted_face_keeps_its_square_on_its_own_axes(degrees):
    tilted = rotated(UPRIGHT, degrees)
    assert math.degrees(face_roll(tilted)) == pytest.approx(degrees)
    sq = keypoint_square(BOX, tilted)
    assert sq[2] == pytest.approx(KP_SIDE_PER_WIDTH * BOX[2])       # the side does not depend on the roll
    offset = rotated(NOSE + np.array(KP_CENTRE) * sq[2], degrees)   # the upright offset, turned with the face
    assert np.allclose(centre(sq), offset)


def test_a_mouth_centre_given_as_both_corners_gives_the_roll_from_nose_to_mouth():
    centre = UPRIGHT.copy()
    centre[3:] = UPRIGHT[3:].mean(0)
    assert face_roll(centre) == pytest.approx(0.0)
    assert math.degrees(face_roll(rotated(centre, 20.0))) == pytest.approx(20.0)
    assert np.allclose(keypoint_square(BOX, centre), keypoint_square(BOX, UPRIGHT))


@pytest.mark.parametrize("landmarks", [
    None,                                                   # the detector gave none (a fixed box, old caches)
    np.full((5, 2), np.nan),                                # not finite
    UPRIGHT[:3],                                            # not 5 points
    UPRIGHT + np.array([200.0, 0.0]),                       # nose outside the box: not this face's keypoints
    rotated(UPRIGHT, 70.0),                                 # a mouth line steeper than KP_MAX_ROLL
], ids=["none", "nan", "three-points", "nose-outside", "roll-70"])
def test_missing_or_implausible_keypoints_give_the_box_square(landmarks):
    assert keypoint_square(BOX, landmarks) is None
    assert face_square(BOX, landmarks, "keypoints") == square_box(BOX)


def test_the_box_rule_ignores_the_keypoints_and_an_unknown_rule_is_refused():
    assert face_square(BOX, UPRIGHT, "box") == square_box(BOX)
    with pytest.raises(VrferError, match="crop rule"):
        face_square(BOX, UPRIGHT, "eyes")


def test_crop_faces_cuts_the_square_of_the_rule_asked_for():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 280), dtype=np.uint8)
    face = Face(BOX, 0.9, UPRIGHT.astype(np.float32))
    kp = crop_faces(img, [face], "detect", "keypoints")[0]
    box = crop_faces(img, [face], "detect", "box")[0]
    assert np.array_equal(kp, align_crop(img, BOX, landmarks=UPRIGHT, crop="keypoints"))
    assert np.array_equal(box, align_crop(img, BOX, crop="box"))
    assert not np.array_equal(kp, box)
    no_kp = crop_faces(img, [Face(BOX, 0.9)], "detect", "keypoints")[0]
    assert np.array_equal(no_kp, box)                       # no landmarks: the box's square


def test_the_spec_reports_the_keypoint_geometry():
    from vrfer.faces import CROP_RULE
    from vrfer.models import create_model
    from vrfer.inference.pipeline_spec import preprocessing_spec
    det = preprocessing_spec(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").cfg)["square"]["detect"]
    assert det["rule"] == CROP_RULE
    assert det["keypoints"]["side_per_width"] == KP_SIDE_PER_WIDTH and det["keypoints"]["centre"] == list(KP_CENTRE)


def test_the_onnx_client_places_the_square_exactly_as_vrfer_does():
    # examples/onnx_client.py repeats the crop rule from the file's spec without importing vrfer: the same integer
    # square (crop_square's rounding) for upright, tilted, implausible and degenerate landmarks
    import importlib.util
    from pathlib import Path

    from vrfer.faces import CropGeometry
    from vrfer.models import create_model
    from vrfer.inference.pipeline_spec import preprocessing_spec
    path = Path(__file__).resolve().parents[1] / "examples" / "onnx_client.py"
    spec_ = importlib.util.spec_from_file_location("onnx_client", path)
    client = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(client)
    spec = preprocessing_spec(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").cfg)
    assert spec["square"]["detect"]["rule"] == CropGeometry().rule == "keypoints"
    rng = np.random.default_rng(0)
    for i in range(3000):
        box = (rng.uniform(-50, 300), rng.uniform(-50, 300), rng.uniform(5, 250), rng.uniform(5, 300))
        x, y, w, h = box
        pts = rotated(UPRIGHT - NOSE + [x + w / 2, y + 0.6 * h], rng.uniform(-70, 70), [x + w / 2, y + 0.6 * h])
        pts = pts + rng.normal(0, 0.05 * w, pts.shape)
        if i % 7 == 0:
            pts[4] = pts[3]                                  # mouth corners given as one point
        if i % 11 == 0:
            pts[2] = [x - 1.0, y]                            # nose outside the box: the box's square
        lx, ly, side = face_square(box, pts, "keypoints")
        want = (int(round(lx)), int(round(ly)), max(1, int(round(side))))
        assert client.face_square(box, True, spec, pts.ravel().tolist()) == want, (box, pts)
