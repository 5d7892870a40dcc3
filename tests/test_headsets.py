"""The real-looking headsets and VR-venue scenes (vrfer.headsets): seeded, truthful about where each mouth is,
and drawn over the eyes, not over the mouth."""

import numpy as np
import pytest

from vrfer.headsets import HEADSET_TYPES, Camera, Source, distractor, headset_photo, scene


def _face(size=200):
    """A plain synthetic frontal face photo and its 5 landmarks (eyes, nose, mouth corners)."""
    img = np.full((size, size, 3), 120, np.uint8)
    pts = np.array([[70, 80], [130, 80], [100, 110], [80, 140], [120, 140]], float)
    return img, pts


def test_a_frontal_camera_leaves_points_where_they_are():
    cam = Camera(100, 100, 120, 0, 0)
    pts = np.array([[10.0, 20.0], [150.0, 90.0]])
    assert np.allclose(cam.project(pts), pts)


def test_a_turned_head_moves_the_mouth_and_the_truth_follows_it():
    img, pts = _face()
    for kind in HEADSET_TYPES:
        out, truth = headset_photo(img, pts, 120, np.random.default_rng(0), kind, yaw=30, pitch=-20)
        assert out.shape == img.shape and truth["headset"] == kind
        mx, my = truth["mouth"]
        assert (mx, my) != (100.0, 140.0) and 0 <= mx < 200 and 0 <= my < 200


def test_the_headset_covers_the_eyes_and_leaves_the_mouth_visible():
    img, pts = _face()
    for seed in range(5):
        out, truth = headset_photo(img, pts, 120, np.random.default_rng(seed), extras=())
        eyes = np.abs(out[75:86, 65:136].astype(int) - 120).mean()
        mx, my = (int(v) for v in truth["mouth"])
        mouth = np.abs(out[my - 3:my + 4, mx - 10:mx + 11].astype(int) - 120).mean()
        assert eyes > 20 and mouth < 1


def test_scenes_are_seeded_and_every_mouth_lies_in_the_photo():
    img, pts = _face()
    src = [Source(img, pts, (40, 50, 120, 150))]
    a, pa = scene(src, np.random.default_rng(3))
    b, pb = scene(src, np.random.default_rng(3))
    assert np.array_equal(a, b) and [p.mouth for p in pa] == [p.mouth for p in pb]
    for seed in range(10):
        im, people = scene(src, np.random.default_rng(seed))
        assert people and people[-1].headset is not None or any(p.headset for p in people)
        for p in people:
            assert 0 <= p.mouth[0] < im.shape[1] and 0 <= p.mouth[1] < im.shape[0]


@pytest.mark.parametrize("kind", ["headset", "hands", "wall", "headset+hands"])
def test_mouth_free_photos_are_of_the_kind_asked(kind):
    im, k = distractor(np.random.default_rng(1), kind=kind)
    assert k == kind and im.shape == (600, 800, 3) and im.dtype == np.uint8
