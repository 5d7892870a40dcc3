"""Specification of vrfer.faces: FER+-style crops, the synthetic headset, and face detection behind it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FACES_DEV, FER_TEST, needs_data

from vrfer.errors import VrferError
from vrfer.faces import CROP_SIDE_PER_WIDTH, FER_SIZE, align_crop, crop_square, iou, square_box
from vrfer.occlusion import draw_headset

PHOTO = FACES_DEV / "Aaron_Peirsol_0001.jpg"


@pytest.fixture(scope="module")
def detector():
    from vrfer.faces import RetinaFaceDetector
    return RetinaFaceDetector(threads=1)


def read(path):
    import cv2
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


# ------------------------------------------------------------------------------------ geometry

def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_the_fer_square_is_built_from_the_box_width_and_sits_on_the_chin():
    x, y, side = square_box((100, 50, 80, 110))
    assert side == pytest.approx(CROP_SIDE_PER_WIDTH * 80)
    assert x + side / 2 == pytest.approx(140)                # centred on the box horizontally
    assert y + side == pytest.approx(50 + 110 - 0.01 * 110)  # bottom edge on the box bottom (chin)


def test_a_headset_that_moves_the_box_top_does_not_move_the_square():
    clean = square_box((100, 50, 80, 110))
    headset = square_box((100, 70, 80, 90))  # same chin and width, top pushed down by the headset
    assert headset[0] == pytest.approx(clean[0])
    assert headset[2] == pytest.approx(clean[2])
    assert abs(headset[1] - clean[1]) < 0.05 * clean[2]


def test_crop_square_replicates_the_border_outside_the_image_and_scales():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    crop = crop_square(img, -5, -5, 10)
    assert crop.shape == (10, 10)
    assert (crop[:5, :5] == img[0, 0]).all()     # the corner pixel, replicated
    assert (crop[5:, 5:] == img[:5, :5]).all()
    assert crop_square(img, 0, 0, 10, out_size=48).shape == (48, 48)


def test_a_square_entirely_outside_the_image_is_an_error():
    with pytest.raises(VrferError, match="outside"):
        crop_square(np.zeros((10, 10), np.uint8), 50, 50, 5)


def test_align_crop_gives_a_48px_gray_square_from_gray_or_color_images():
    bgr = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    for img in (bgr, bgr[..., 0]):
        crop = align_crop(img, (100, 40, 80, 110))
        assert crop.shape == (FER_SIZE, FER_SIZE) and crop.dtype == np.uint8
    # square=False takes the region as given: a square region is the crop itself
    img = np.zeros((100, 100), np.uint8)
    img[10:60, 20:70] = 200
    assert (align_crop(img, (20, 10, 50, 50), size=50, square=False) == 200).all()


# ------------------------------------------------------------------------------------- headset

def test_draw_headset_darkens_eyes_and_brows_and_leaves_mouth_and_input_alone():
    img = np.full((200, 200, 3), 200, np.uint8)
    box = (50, 40, 100, 130)
    out = draw_headset(img, box)
    assert (img == 200).all()                          # the input is not modified
    eyes = out[40 + int(0.375 * 130) - 5: 40 + int(0.375 * 130) + 5, 60:140]
    assert eyes.mean() < 60                            # eyes covered
    assert out[40 + 10:40 + 20, 70:130].mean() < 60    # brows covered
    assert (out[40 + 90:40 + 130, 50:150] == 200).all()  # mouth and chin untouched
    plain = draw_headset(img[..., 0], box, style="plain")
    assert plain.ndim == 2 and plain[70, 100] < 60


def test_draw_headset_accepts_five_landmarks():
    img = np.full((200, 200), 200, np.uint8)
    pts = np.array([[75, 90], [125, 90], [100, 115], [80, 140], [120, 140]], float)
    out = draw_headset(img, pts)
    assert out[90, 100] < 60 and out[140, 100] == 200


# ----------------------------------------------------------------------------------- detection

@needs_data(PHOTO)
def test_the_detector_finds_the_face_in_a_real_photo_with_and_without_a_headset(detector):
    img = read(PHOTO)
    faces = detector.detect(img)
    assert len(faces) == 1
    clean = faces[0]
    x, y, w, h = clean.box
    assert w > 0.5 * img.shape[1] and 0.5 < w / h < 1.0   # a face-filling photo, a face-shaped box
    behind = detector.detect(draw_headset(img, clean.box))
    assert behind and iou(behind[0].box, clean.box) > 0.5


def test_the_detector_finds_nothing_in_flat_or_noise_images(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def webcam_frame(photo_name: str, size: int, x: int = 150, y: int = 100) -> np.ndarray:
    """A bundled headset photo scaled to size x size on a flat 640x480 frame (a webcam-sized picture)."""
    import cv2
    from vrfer.inputs import samples_path
    face = cv2.resize(read(samples_path() / photo_name), (size, size), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    frame[y:y + size, x:x + size] = face
    return frame


ANNA = "photo-surprise-Anna_Chicherova_0001.jpg"
CAMERON = "photo-happiness-Cameron_Diaz_0001.jpg"


def test_a_headset_face_that_the_first_scan_misses_is_found_by_blazeface(detector):
    frame = webcam_frame(ANNA, 160)
    assert detector._scan(frame, detector.scan_side, pad=0.0)[0] == []   # RetinaFace's 320 px scan misses it
    faces = detector.detect(frame)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert iou(faces[0].box, (150, 100, 160, 160)) > 0.4 and 0.6 < w / h < 0.85   # on the photo, face-shaped
    from vrfer.faces import RetinaFaceDetector
    slow = RetinaFaceDetector(threads=1, blazeface=False).detect(frame)    # the full search agrees
    assert slow and iou(slow[0].box, faces[0].box) > 0.5


def test_an_unsure_blazeface_box_with_no_retinaface_candidate_there_is_not_reported(detector):
    frame = webcam_frame(CAMERON, 160)
    weak = detector.blazeface.detect(frame, threshold=0.3)
    assert weak and max(f.score for f in weak) < detector.blaze_sure           # BlazeFace is unsure here...
    assert detector._second_opinion(frame, cands=[]) == []                    # ...so alone it is not enough
    faces = detector.detect(frame)                                            # the slow passes find the face
    assert faces and faces[0].detector == "retinaface" and iou(faces[0].box, (150, 100, 160, 160)) > 0.3


def test_an_unsure_blazeface_box_where_the_scan_had_a_candidate_is_reported(detector):
    frame = webcam_frame(CAMERON, 240)
    faces, cands = detector._scan(frame, detector.scan_side, pad=0.0)
    assert faces == [] and cands and max(c.score for c in cands) < 0.5       # the scan has only a weak candidate
    best = max(detector.blazeface.detect(frame, 0.3), key=lambda f: f.score)
    assert detector.blaze_threshold <= best.score < detector.blaze_sure       # BlazeFace is unsure too
    assert detector._second_opinion(frame, cands=[]) == []
    agreed = detector._second_opinion(frame, cands)                           # but the two agree on the place
    assert len(agreed) == 1 and agreed[0].detector == "blazeface" and iou(agreed[0].box, cands[0].box) > 0.2


def test_a_face_that_fills_the_image_is_looked_at_again_with_a_border(detector):
    from vrfer.faces import Face
    from vrfer.inputs import samples_path
    photo = read(samples_path() / ANNA)                                        # 350x350, the face fills it
    assert detector.blazeface.detect(photo, threshold=0.3) == []             # unpadded, BlazeFace misses it
    ref = detector.detect(photo)[0]                                            # RetinaFace's box
    found = detector._second_opinion(photo, cands=[Face(ref.box, 0.05)])
    assert len(found) == 1 and iou(found[0].box, ref.box) > 0.5


def test_two_headset_faces_in_one_frame_are_both_reported(detector):
    import cv2
    from vrfer.inputs import samples_path
    face = cv2.resize(read(samples_path() / ANNA), (160, 160), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), (70, 80, 90), np.uint8)
    frame[150:310, 40:200] = face
    frame[150:310, 420:580] = face
    faces = detector.detect(frame)
    assert len(faces) == 2
    assert sorted(round(f.box[0] + f.box[2] / 2) // 320 for f in faces) == [0, 1]   # one on each side


@needs_data(FACES_DEV)
def test_blazeface_boxes_behind_a_headset_give_the_crop_of_the_clean_face(detector):
    """BlazeFace's box is mapped to RetinaFace's geometry: on faces-dev headset photos placed in a webcam-sized
    frame, the FER+ square from BlazeFace's box matches the square from RetinaFace's box of the clean photo."""
    import cv2
    ratios, overlaps = [], []
    for path in sorted(FACES_DEV.iterdir())[:120:4]:
        img = read(path)
        clean = detector.detect(img)
        if not clean:
            continue
        ref = clean[0].box
        k = 300 / max(img.shape[:2])                     # the photo's long side to 300 px, aspect kept
        photo = cv2.resize(draw_headset(img, ref), None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        frame = np.full((480, 640, 3), 110, np.uint8)
        frame[90:90 + photo.shape[0], 170:170 + photo.shape[1]] = photo
        ref = (ref[0] * k + 170, ref[1] * k + 90, ref[2] * k, ref[3] * k)
        found = [f for f in detector.blazeface.detect(frame, 0.3) if iou(f.box, ref) > 0.3]
        if found:
            b = max(found, key=lambda f: f.score).box
            ratios.append(b[2] / ref[2])
            a, c = square_box(ref), square_box(b)
            overlaps.append(iou((a[0], a[1], a[2], a[2]), (c[0], c[1], c[2], c[2])))
    assert len(ratios) >= 20
    assert 0.9 < np.median(ratios) < 1.1 and np.median(overlaps) > 0.7


def test_the_detector_can_run_without_blazeface():
    from vrfer.faces import RetinaFaceDetector
    det = RetinaFaceDetector(threads=1, blazeface=False)
    assert det.blazeface is None
    assert det.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert det.detect(webcam_frame(ANNA, 240))


def test_a_missing_blazeface_file_is_one_clear_error(monkeypatch, tmp_path):
    from vrfer.faces import BlazeFace
    monkeypatch.setenv("VRFER_BLAZEFACE_ONNX", str(tmp_path / "nope.onnx"))
    with pytest.raises(VrferError, match="VRFER_BLAZEFACE_ONNX"):
        BlazeFace(threads=1)


@needs_data(FER_TEST)
def test_crops_of_detected_fer_faces_are_framed_like_the_fer_crop_itself(detector):
    """Put FER+ test faces (48x48) back into a bigger picture; detection + square_box must recover
    about the original frame, which is what the classifier was trained on."""
    import cv2
    files = sorted(FER_TEST.glob("*.png"))[:12]
    ious = []
    for f in files:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        up = cv2.resize(g, (192, 192), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(up, 96, 96, 96, 96, cv2.BORDER_REPLICATE)
        faces = detector.detect(big)
        if not faces:
            continue
        sx, sy, side = square_box(faces[0].box)
        ious.append(iou((sx, sy, side, side), (96, 96, 192, 192)))
    assert len(ious) >= 10
    assert np.median(ious) > 0.75


@needs_data(PHOTO)
def test_the_tracker_follows_a_face_through_frames_and_holds_it_briefly(detector):
    from vrfer.faces.tracking import FaceTracker
    img = read(PHOTO)
    tracker = FaceTracker(detector, max_missed=2)
    first = tracker.update(img)
    assert len(first) == 1
    shifted = np.roll(img, 6, axis=1)
    second = tracker.update(shifted)
    assert second and iou(second[0].box, first[0].box) > 0.5
    blank = np.full_like(img, 128)
    assert tracker.update(blank)        # missed: the last box is kept...
    assert tracker.update(blank)
    assert tracker.update(blank) == []  # ...for max_missed frames, then a full search finds nothing
