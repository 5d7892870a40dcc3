"""The paper's occlusion (top half black) and the visible-half input mode."""

import numpy as np
import torch

from vrfer.augment import Augment
from vrfer.inference.preprocess import prepare
from vrfer.models import create_model
from vrfer.occlusion import apply_input_mode, hflip, lower_half, occlude_upper


def test_occlusion_blacks_out_exactly_the_top_half_of_the_rows():
    img = np.full((48, 48), 200, np.uint8)
    out = occlude_upper(img)
    assert (out[:24] == 0).all() and (out[24:] == 200).all()
    assert (img == 200).all()  # input untouched


def test_occlusion_fraction_is_configurable():
    out = occlude_upper(torch.ones(2, 1, 40, 40), fraction=0.25)
    assert out[..., :10, :].sum() == 0 and (out[..., 10:, :] == 1).all()


def test_visible_half_keeps_the_same_rows_the_occluded_face_shows():
    img = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    vis = lower_half(img)
    assert vis.shape == (3, 24, 48)
    np.testing.assert_array_equal(vis, occlude_upper(img)[:, 24:])
    assert apply_input_mode(img, "full") is img


def test_flip_mirrors_the_width_axis():
    img = np.arange(6).reshape(1, 2, 3)
    np.testing.assert_array_equal(hflip(img), img[..., ::-1])


def test_prepare_builds_each_model_input_shape():
    faces = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    for mode, shape in [("full", (4, 1, 48, 48)), ("upper-occluded", (4, 1, 48, 48)), ("visible-half", (4, 1, 24, 48))]:
        m = create_model("vrfer-cnn-small", pretrained=False, input_mode=mode)
        x = prepare(faces, m.cfg)
        assert tuple(x.shape) == shape and tuple(x.shape[1:]) == m.cfg.input_shape
    occ = prepare(faces, create_model("vrfer-cnn-small", pretrained=False, input_mode="upper-occluded").cfg)
    # black pixels after normalisation: (0 - mean) / std everywhere in the top half
    assert torch.allclose(occ[:, :, :24], torch.tensor(-128.0 / 64.0))


def test_flip_augmentation_flips_about_half_of_a_batch_and_is_seeded():
    faces = np.random.default_rng(1).integers(0, 255, (200, 48, 48), dtype=np.uint8)
    cfg = create_model("vrfer-cnn-small", pretrained=False).cfg
    plain = prepare(faces, cfg)
    a = prepare(faces, cfg, Augment(flip=True), torch.Generator().manual_seed(3))
    b = prepare(faces, cfg, Augment(flip=True), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    flipped = (a == plain.flip(-1)).flatten(1).all(1)
    same = (a == plain).flatten(1).all(1)
    assert (flipped | same).all() and 60 < int(flipped.sum()) < 140


def test_synthetic_headset_covers_the_top_down_to_its_edge_and_spares_the_mouth():
    from vrfer.occlusion import paint_headset
    x = torch.full((64, 1, 48, 48), 200.0)
    out = paint_headset(x, (0.4, 0.6), torch.Generator().manual_seed(0))
    assert (out[:, :, :15] < 120).float().mean() > 0.9          # top rows: dark headset (strap at sides)
    assert torch.equal(out[:, :, 32:], x[:, :, 32:])             # mouth and chin untouched
    edge_rows = (out[:, 0, :, 24] < 120).sum(1).float()          # headset depth at the centre column
    assert edge_rows.min() >= 0.4 * 48 - 1 and edge_rows.max() <= 0.6 * 48 + 1
    assert edge_rows.std() > 2                                   # the edge moves from face to face
    again = paint_headset(x, (0.4, 0.6), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)                               # deterministic: resume stays exact


def test_training_augmentations_are_seeded_and_off_by_default():
    faces = (torch.rand(16, 48, 48) * 255).to(torch.uint8)
    cfg = create_model("vrfer-cnn-small", pretrained=False).cfg
    aug = Augment(headset=1.0, photometric=1.0)
    a = prepare(faces, cfg, aug, torch.Generator().manual_seed(5))
    b = prepare(faces, cfg, aug, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    plain = prepare(faces, cfg, Augment(flip=False), torch.Generator().manual_seed(5))
    assert torch.equal(plain, prepare(faces, cfg))                # no augmentation unless asked for
    assert not torch.equal(prepare(faces, cfg, Augment(flip=False, photometric=1.0), torch.Generator().manual_seed(5)),
                           plain)


def test_random_erasing_replaces_one_rectangle_of_what_the_model_sees_in_about_the_asked_share_of_faces():
    faces = np.full((400, 48, 48), 128, np.uint8)
    cfg = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").cfg
    plain = prepare(faces, cfg)
    a = prepare(faces, cfg, Augment(flip=False, erase=0.5), torch.Generator().manual_seed(7))
    assert torch.equal(a, prepare(faces, cfg, Augment(flip=False, erase=0.5), torch.Generator().manual_seed(7)))
    changed = a != plain                                          # (N, 1, 24, 48): the erased pixels
    erased = changed.flatten(1).any(1)
    assert 150 < int(erased.sum()) < 250                          # about half the faces
    for m in changed[erased][:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        box = (r1 - r0) * (c1 - c0)
        # one rectangle (noise may equal the face's 128 at a pixel or two), 2-33% of the 24x48 visible half
        assert m[r0:r1, c0:c1].float().mean() > 0.95 and int(m.sum()) == int(m[r0:r1, c0:c1].sum())
        assert 0.02 * 24 * 48 * 0.5 <= box <= 0.33 * 24 * 48 * 1.5
    assert torch.equal(prepare(faces, cfg, Augment(flip=False, erase=1.0), torch.Generator().manual_seed(7)).ne(plain)
                       .flatten(1).any(1), torch.ones(400, dtype=torch.bool))
