"""vrfer.inference.pipeline: one loader, one face option, one crop, one post-processing; vrfer.inference.smoothing; resolve_model."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from vrfer.classes import CLASSES
from vrfer.errors import ImageTooLargeError, NoFaceError, VrferError
from vrfer.models import create_model, resolve_model, save_model
from vrfer.inference.pipeline import Pipeline, crop_faces, find_faces, parse_face
from vrfer.inference.images import load_image
from vrfer.inference.pipeline_spec import GRAY_SHIFT, GRAY_WEIGHTS_RGB, preprocessing_spec
from vrfer.inference.postprocess import PostProcess, adjust_probs
from vrfer.inference.smoothing import Smoother

FER_PRIOR = [0.349, 0.291, 0.125, 0.121, 0.084, 0.005, 0.021, 0.005]    # FER+ train, majority labels


def cfg_with_prior(prior=FER_PRIOR):
    cfg = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").cfg
    return replace(cfg, extra={"train_prior": list(prior)} if prior is not None else {})


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ loading

def test_one_loader_for_files_bytes_arrays_and_pil_images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    im.save(tmp_path / "a.png")
    bgr = rgb[..., ::-1]
    for src in (tmp_path / "a.png", str(tmp_path / "a.png"), png_bytes(im), im, bgr):
        out = load_image(src)
        assert out.dtype == np.uint8 and np.array_equal(out, bgr)


def test_16bit_gray_bgra_and_exif_orientation():
    g16 = (np.arange(24 * 16, dtype=np.uint16).reshape(24, 16) * 170)
    assert np.array_equal(load_image(png_bytes(Image.fromarray(g16))), (g16 >> 8).astype(np.uint8))
    gray = np.arange(20 * 10, dtype=np.uint8).reshape(20, 10)
    assert np.array_equal(load_image(png_bytes(Image.fromarray(gray))), gray)
    bgra = np.zeros((10, 12, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 200, 255
    assert load_image(bgra).shape == (10, 12, 3) and load_image(bgra)[0, 0, 0] == 200
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))                  # transparent: laid over white
    assert load_image(png_bytes(rgba)).min() == 255
    # EXIF orientation 6 (rotate 90 degrees clockwise to view): a 40x20 JPEG is shown 20x40
    im = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (20, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue())
    assert out.shape[:2] == (40, 20)
    assert out[0].mean() < out[-1].mean()                            # the dark left edge is now at the top


def test_bad_bytes_and_oversized_images_raise_one_clear_error():
    with pytest.raises(VrferError, match="empty"):
        load_image(b"")
    with pytest.raises(VrferError, match="not an image"):
        load_image(b"hello, not an image")
    with pytest.raises(ImageTooLargeError, match="too large"):
        load_image(png_bytes(Image.new("L", (100, 100))), max_pixels=5000)
    with pytest.raises(VrferError, match="PNG expected"):
        buf = io.BytesIO()
        Image.new("L", (10, 10)).save(buf, format="TIFF")
        load_image(buf.getvalue(), formats=("PNG",))


def test_the_gray_formula_in_the_spec_is_what_opencv_computes():
    import cv2
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (500, 500, 3), dtype=np.uint8)
    b, g, r = (bgr[..., i].astype(np.int64) for i in range(3))
    wr, wg, wb = GRAY_WEIGHTS_RGB
    mine = (wr * r + wg * g + wb * b + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT
    assert np.array_equal(mine, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


# ------------------------------------------------------------------------------------------ faces and crops

def test_the_face_option_is_parsed_in_one_place():
    assert parse_face("none") == "none" and parse_face(" DETECT ") == "detect"
    assert parse_face("10, 20,30,40") == (10, 20, 30, 40)
    assert parse_face("10.6,20.4,30,40") == (11, 20, 30, 40)       # to the nearest pixel
    assert parse_face((1, 2, 3, 4)) == (1, 2, 3, 4)
    for bad in ("10,20,30", "a,b,c,d", "0,0,0,10", "0,0,10,-5", "somewhere"):
        with pytest.raises(VrferError, match="expected x,y,w,h"):
            parse_face(bad)


def test_none_and_a_box_around_the_same_pixels_give_the_same_crop():
    import cv2
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    box = (100, 50, 60, 90)                                          # a 90 px square centred on it
    a = crop_faces(photo, find_faces(photo, box), box)
    square = photo[50:140, 85:175]
    b = crop_faces(square, find_faces(square, "none"), "none")
    assert a.shape == (1, 48, 48) and np.array_equal(a, b)
    assert np.array_equal(b[0], cv2.resize(square, (48, 48), interpolation=cv2.INTER_AREA))
    tall = photo[:90, :60]                                           # non-square: padded with its edges, not cut
    c = crop_faces(tall, find_faces(tall, "none"), "none")[0]
    padded = cv2.copyMakeBorder(tall, 0, 0, 15, 15, cv2.BORDER_REPLICATE)
    assert np.array_equal(c, cv2.resize(padded, (48, 48), interpolation=cv2.INTER_AREA))
    with pytest.raises(VrferError, match="outside"):
        find_faces(photo, (400, 10, 20, 20))
    with pytest.raises(VrferError, match="too small"):
        find_faces(np.zeros((4, 40), np.uint8), "none")


def test_no_face_is_a_typed_error(tmp_path):
    class NoFaces:
        def detect(self, image):
            return []
    path = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), path)
    pipe = Pipeline(str(path), "detect", detector=NoFaces())
    with pytest.raises(NoFaceError):
        pipe.run(np.full((64, 64), 128, np.uint8))


# ------------------------------------------------------------------------------------------ prior and classes

def test_the_default_leaves_the_models_probabilities_as_they_are():
    p = np.random.default_rng(3).dirichlet(np.ones(8), size=5)
    assert PostProcess(cfg_with_prior(None)).apply(p) is not None
    assert np.array_equal(adjust_probs(p, cfg_with_prior(None)), p)
    assert np.array_equal(adjust_probs(p, cfg_with_prior(), prior="train", tau=3.0), p)


def test_uniform_prior_moves_probability_from_frequent_to_rare_classes():
    cfg = cfg_with_prior()
    logits = np.log(np.array(FER_PRIOR)) + np.random.default_rng(4).normal(0, 0.3, (50, 8))
    p = adjust_probs(logits, cfg, logits=True, prior="train")        # a model that mostly says its prior
    q = adjust_probs(p, cfg, prior="uniform")
    neutral, disgust = CLASSES.index("neutral"), CLASSES.index("disgust")
    assert (q[:, neutral] < p[:, neutral]).all() and (q[:, disgust] > p[:, disgust]).all()
    frequent = np.isin(p.argmax(1), [neutral, CLASSES.index("happiness")]).mean()
    assert frequent > 0.9 and np.isin(q.argmax(1), [neutral, CLASSES.index("happiness")]).mean() < 0.5
    assert np.allclose(q.sum(1), 1)
    # the shift is tau * (log target - log train prior), here target uniform
    expect = np.log(p) - np.log(FER_PRIOR)
    expect = np.exp(expect - expect.max(1, keepdims=True))
    assert np.allclose(q, expect / expect.sum(1, keepdims=True))
    half = adjust_probs(p, cfg, prior="uniform", tau=0.5)
    assert (p[:, disgust] < half[:, disgust]).all() and (half[:, disgust] < q[:, disgust]).all()
    assert np.allclose(adjust_probs(p, cfg, prior="uniform", tau=0), p)


def test_a_prior_file_is_the_target_class_frequencies(tmp_path):
    cfg = cfg_with_prior()
    p = np.random.default_rng(5).dirichlet(np.ones(8), size=4)
    f = tmp_path / "prior.json"
    f.write_text(json.dumps(FER_PRIOR))
    assert np.allclose(adjust_probs(p, cfg, prior=str(f)), p)        # the training prior itself: no change
    f.write_text(json.dumps({c: 1 for c in CLASSES}))
    assert np.allclose(adjust_probs(p, cfg, prior=str(f)), adjust_probs(p, cfg, prior="uniform"))
    for bad in ([1, 2, 3], [0] * 8, {"neutral": 1}):
        f.write_text(json.dumps(bad))
        with pytest.raises(VrferError, match="--prior"):
            adjust_probs(p, cfg, prior=str(f))


def test_a_prior_needs_the_training_prior_stored_with_the_model():
    with pytest.raises(VrferError, match="carries no training prior"):
        PostProcess(cfg_with_prior(None), prior="uniform")


def test_classes_never_answers_outside_the_set():
    cfg = cfg_with_prior()
    p = np.random.default_rng(6).dirichlet(np.ones(8) * 0.3, size=200)
    keep = ("sadness", "anger", "fear")
    for prior in ("train", "uniform"):
        q = adjust_probs(p, cfg, prior=prior, classes="fear,anger,sadness")
        idx = [CLASSES.index(c) for c in keep]
        assert set(q.argmax(1)) <= set(idx)
        assert np.all(np.delete(q, idx, axis=1) == 0) and np.allclose(q.sum(1), 1)
    q = adjust_probs(p, cfg, classes=list(keep))                     # renormalised over the set
    sub = p[:, idx] / p[:, idx].sum(1, keepdims=True)
    assert np.allclose(q[:, idx], sub)
    with pytest.raises(VrferError, match="unknown class 'boredom'"):
        adjust_probs(p, cfg, classes="boredom")


def test_the_spec_carries_the_post_processing_and_the_crop_rule():
    cfg = cfg_with_prior()
    spec = preprocessing_spec(cfg, PostProcess(cfg, "uniform", 0.5, "neutral,happiness"))
    assert spec["postprocess"]["prior"] == "uniform" and spec["postprocess"]["tau"] == 0.5
    assert spec["postprocess"]["classes"] == ["neutral", "happiness"]
    assert np.allclose(spec["postprocess"]["train_prior"], np.array(FER_PRIOR) / sum(FER_PRIOR))
    assert spec["crop"]["size"] == 48 and spec["crop"]["pad"] == "replicate"
    assert spec["square"]["detect"]["side_per_width"] == 1.35


# ------------------------------------------------------------------------------------------ smoothing

def test_alpha_is_the_weight_of_the_newest_frame():
    s = Smoother(alpha=0.25)
    a, b = np.eye(8)[0], np.eye(8)[1]
    box = (10, 10, 50, 50)
    assert np.allclose(s.update([box], [a])[0], a)
    assert np.allclose(s.update([box], [b])[0], 0.25 * b + 0.75 * a)
    assert np.allclose(Smoother(alpha=1.0).update([box], [b])[0], b)
    for bad in (0, 1.5, -1, "x"):
        with pytest.raises(VrferError):
            Smoother(alpha=bad)


def test_faces_are_matched_by_overlap_not_by_their_order():
    s = Smoother(alpha=0.5)
    a, b, c = np.eye(8)[0], np.eye(8)[1], np.eye(8)[2]
    left, right = (0, 0, 40, 40), (200, 0, 40, 40)
    s.update([left, right], [a, b])
    out = s.update([(202, 1, 40, 40), (1, 0, 40, 40)], [c, c])      # the same faces, listed the other way round
    assert np.allclose(out[0], (b + c) / 2) and np.allclose(out[1], (a + c) / 2)
    out = s.update([(500, 500, 40, 40)], [a])                        # a new face starts from its own
    assert np.allclose(out[0], a)


# ------------------------------------------------------------------------------------------ models

def test_resolve_model_names_files_and_run_folders(tmp_path):
    cfg, weights = resolve_model("vrfer-cnn-small")
    assert cfg.name == "vrfer-cnn-small" and weights is None
    path = tmp_path / "run" / "best.safetensors"
    path.parent.mkdir()
    save_model(create_model("vrfer-cnn-small", pretrained=False), path)
    assert resolve_model(str(path)).weights == path
    assert resolve_model(str(path.parent)).weights == path
    for bad, msg in (("no-such-model", "unknown model"), (str(tmp_path / "x.safetensors"), "not found"),
                     (str(tmp_path), "without best.safetensors")):
        with pytest.raises(VrferError, match=msg):
            resolve_model(bad)


def test_no_prior_given_means_the_models_own_default_and_an_explicit_one_overrides_it():
    cfg = replace(cfg_with_prior(), extra={"train_prior": FER_PRIOR, "default_post": {"prior": "uniform", "tau": 0.25}})
    p = np.array([[0.40, 0.30, 0.10, 0.10, 0.05, 0.01, 0.03, 0.01]])
    assert np.allclose(adjust_probs(p, cfg), adjust_probs(p, cfg, prior="uniform", tau=0.25))
    assert not np.allclose(adjust_probs(p, cfg), p)
    assert np.array_equal(adjust_probs(p, cfg, prior="train"), p)             # the plain model on request
    assert np.allclose(adjust_probs(p, cfg, prior="uniform"), adjust_probs(p, cfg_with_prior(), prior="uniform"))
    assert np.array_equal(adjust_probs(p, cfg_with_prior()), p)                # no default stored: plain


def test_bundled_models_carry_the_default_chosen_on_ferplus_valid():
    for name in ("vrfer-lower", "vrfer-full"):
        extra = create_model(name).cfg.extra
        assert extra["default_post"] == {"prior": "uniform", "tau": 0.25}
        assert len(extra["train_prior"]) == 8
