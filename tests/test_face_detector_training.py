"""The face detector can be fine-tuned: the PyTorch network reads the shipped ONNX graph exactly and writes one the
detector runs; tools/train_face_detector.py's anchor targets encode each face so that it decodes back, and leave
faces nobody can read out of the loss."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import FACES_DEV, REPO, needs_data

from vrfer.errors import VrferError
from vrfer.faces.retinaface import RetinaFaceDetector, prior_boxes, retinaface_onnx
from vrfer.faces.retinaface_net import RetinaFaceNet, from_onnx, to_onnx

sys.path.insert(0, str(REPO / "tools"))
import train_face_detector as tfd  # noqa: E402


def _run(graph, x):
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("weights", ["original", "headsets"])
def test_the_network_reads_the_shipped_graphs_and_answers_as_they_do(weights):
    graph = retinaface_onnx(weights)
    x = np.random.default_rng(0).normal(0, 60, (1, 3, 240, 320)).astype(np.float32)
    with torch.no_grad():
        mine = from_onnx(graph)(torch.from_numpy(x))
    for theirs, ours in zip(_run(graph, x), mine):
        assert theirs.shape == tuple(ours.shape)
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)


def test_a_written_graph_runs_at_any_size_in_the_detector(tmp_path, monkeypatch):
    net = from_onnx(retinaface_onnx("original"))
    with torch.no_grad():   # a changed network, so that the graph cannot be the shipped one by chance
        net.class_head[0].bias += torch.tensor([0.5, -0.5, 0.2, -0.2])
    path = tmp_path / "det.onnx"
    to_onnx(net, path)
    x = np.random.default_rng(1).normal(0, 60, (1, 3, 203, 301)).astype(np.float32)   # not a multiple of 32
    with torch.no_grad():
        mine = net(torch.from_numpy(x))
    for theirs, ours in zip(_run(path.read_bytes(), x), mine):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)
    assert len(_run(path.read_bytes(), x)[0][0]) == len(prior_boxes(203, 301))
    back = from_onnx(path.read_bytes()).state_dict()
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    monkeypatch.setenv("VRFER_RETINAFACE_ONNX", str(path))
    assert RetinaFaceDetector(blazeface=False).raw(np.zeros((120, 160, 3), np.uint8), 0.99)[0].shape == (0, 4)


def test_a_graph_of_another_network_is_refused():
    node = onnx.helper.make_node("Conv", ["input", "w", "b"], ["loc"])
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("loc", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.zeros((4, 3, 1, 1), np.float32), "w"),
         onnx.numpy_helper.from_array(np.zeros(4, np.float32), "b")])
    with pytest.raises(VrferError, match="not a RetinaFace"):
        from_onnx(onnx.helper.make_model(graph).SerializeToString())


def test_a_face_is_encoded_on_its_anchors_so_that_it_decodes_back():
    priors = prior_boxes(320, 320)
    box = np.array([[100.0, 80.0, 60.0, 75.0]], np.float32)
    lms = np.array([[[115, 105], [145, 105], [130, 125], [118, 140], [142, 140]]], np.float32)
    label, loc, lm = tfd.targets(priors, box, lms, np.array([False]))
    pos = label == 1
    assert 1 <= pos.sum() <= 20
    p = priors[pos]
    centre = p[:, :2] + loc[pos, :2] * 0.1 * p[:, 2:]
    wh = p[:, 2:] * np.exp(loc[pos, 2:] * 0.2)
    np.testing.assert_allclose(np.hstack([centre - wh / 2, wh]), np.repeat(box, len(p), 0), atol=1e-3)
    pts = p[:, None, :2] + lm[pos].reshape(-1, 5, 2) * 0.1 * p[:, None, 2:]
    np.testing.assert_allclose(pts, np.repeat(lms, len(p), 0), atol=1e-3)
    assert (label == 0).sum() > 0.95 * len(priors)      # the rest is background


def test_a_face_nobody_can_read_is_neither_a_face_nor_background():
    priors = prior_boxes(320, 320)
    box = np.array([[100.0, 80.0, 60.0, 75.0]], np.float32)
    lms = np.zeros((1, 5, 2), np.float32)
    label, _, _ = tfd.targets(priors, box, lms, np.array([True]))
    assert not (label == 1).any()
    readable, _, _ = tfd.targets(priors, box, lms, np.array([False]))
    assert set(np.flatnonzero(readable == 1)) <= set(np.flatnonzero(label == -1))
    empty, _, _ = tfd.targets(priors, np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, bool))
    assert (empty == 0).all()


def test_hard_negatives_make_a_face_free_photo_teach_too():
    label = torch.zeros(1, 50, dtype=torch.long)
    conf = torch.zeros(1, 50, 2)
    conf[0, 7, 1] = 5.0     # one anchor sure of a face where there is none
    out = (torch.zeros(1, 50, 4), conf.requires_grad_(), torch.zeros(1, 50, 10))
    loss, _ = tfd.loss_fn(out, label, torch.zeros(1, 50, 4), torch.zeros(1, 50, 10))
    loss.backward()
    assert loss.item() > 1.0 and out[1].grad[0, 7, 1] > 0


@needs_data(FACES_DEV)
def test_the_tool_trains_resumes_and_writes_the_detector(tmp_path, monkeypatch):
    args = ["--out", str(tmp_path / "run"), "--scenes", "4", "--empty", "1", "--batch", "2", "--crop", "160",
            "--cache", str(tmp_path / "cache")]
    assert tfd.main(args + ["--steps", "2"]) == 0
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert first["step"] == 2
    assert tfd.main(args + ["--steps", "3", "--resume"]) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3
    graph = tmp_path / "run" / "retinaface_mnet025.onnx"
    net = RetinaFaceNet()
    net.load_state_dict(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["net"])
    x = np.zeros((1, 3, 96, 96), np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(_run(graph.read_bytes(), x)[2], net(torch.from_numpy(x))[2].numpy(), atol=1e-4)
    changed = any(not torch.equal(a, b) for a, b in zip(first["net"].values(), from_onnx(retinaface_onnx("original")).state_dict().values()))
    assert changed


def test_a_generic_negative_fills_the_crop_and_holds_no_face():
    rng = np.random.default_rng(0)
    for _ in range(30):
        img, boxes, lms, ignore = tfd.sample(tfd.GENERIC, None, 160, rng)
        assert img.shape == (160, 160, 3) and img.dtype == np.uint8
        assert len(boxes) == len(lms) == len(ignore) == 0
