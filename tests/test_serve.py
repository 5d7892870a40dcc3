"""`vrfer serve` end to end: a real uvicorn server on a free loopback port, real HTTP and WebSocket clients.

The model is a fresh vrfer-cnn-small saved to a temporary file; for the change-event test its last layer
is set so that one face reads as happiness and another as sadness (the whole pipeline stays real). The faces
are the two photos that ship with vrfer. Where a test is about timing (a slow consumer, a busy model) the
model is held at a gate the test opens, so what it checks does not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from conftest import FACES_DEV, needs_data
from websockets.sync.client import connect as ws_connect

from vrfer.classes import CLASSES
from vrfer.fingerprint import weights_fingerprint
from vrfer.inputs import samples_path
from vrfer.serve.app import ServeConfig, ServerThread, create_app
from vrfer.serve.engine import Predictor
from vrfer.serve.protocol import Debouncer, Params, ProtocolError

MAX_FRAME = 256 * 1024


# ------------------------------------------------------------------------------------------ fixtures

def _jpeg(a: np.ndarray, quality: int = 85) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sample_photos() -> list[bytes]:
    """The two face photos that ship with vrfer (faces-dev photos with a headset drawn on), as JPEG bytes."""
    photos = [f.read_bytes() for f in sorted(samples_path().glob("photo-*.jpg"))]
    assert len(photos) == 2
    return photos


@pytest.fixture(scope="module")
def faces() -> list[bytes]:
    return sample_photos()


def make_steered_model(path: Path, face_a: bytes, face_b: bytes, face="none") -> Path:
    """Save a fresh vrfer-cnn-small (visible half) whose classifier reads face_a as happiness and face_b as
    sadness: a line through the two faces' penultimate features, as the server's own pipeline (decode ->
    face -> crop -> model) produces them. Every other part of the model and the pipeline stays real."""
    import torch
    from torch import nn

    from vrfer.models import create_model, save_model
    from vrfer.inference.images import load_image
    from vrfer.serve.engine import Predictor

    torch.manual_seed(0)
    model = create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half").eval()
    save_model(model, path)
    predictor = Predictor(str(path), face)
    feats = []

    def grab(module, inputs, output):
        if isinstance(module, nn.Linear) and module.out_features == len(CLASSES):
            feats.append(inputs[0].detach().clone())

    hook = torch.nn.modules.module.register_module_forward_hook(grab)
    try:
        for data in (face_a, face_b):
            predictor.predict(load_image(data))
    finally:
        hook.remove()
    assert len(feats) == 2, "the classifier's last layer was not seen"
    fa, fb = feats[0][0], feats[1][0]
    d, mid = fa - fb, (fa + fb) / 2
    k = 12.0 / float(d @ d)
    w = torch.zeros_like(model.classifier.weight)
    b = torch.zeros_like(model.classifier.bias)
    hi, lo = CLASSES.index("happiness"), CLASSES.index("sadness")
    w[hi], b[hi] = k * d, -k * float(d @ mid)
    w[lo], b[lo] = -k * d, k * float(d @ mid)
    with torch.no_grad():
        model.classifier.weight.copy_(w)
        model.classifier.bias.copy_(b)
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def steered_model(tmp_path_factory, faces) -> Path:
    return make_steered_model(tmp_path_factory.mktemp("serve") / "m.safetensors", faces[0], faces[1])


@pytest.fixture(scope="module")
def server(steered_model):
    cfg = ServeConfig(model=str(steered_model), face="none", port=0, max_frame_bytes=MAX_FRAME)
    with ServerThread(create_app(cfg), cfg) as srv:
        yield srv


class GatedPredictor(Predictor):
    """The server's real predictor, held at a gate: each batch sets `entered`, then waits until the test opens
    `gate`; until then the model is busy, as a slow one would be, for exactly as long as the test needs."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered, self.gate = threading.Event(), threading.Event()

    def predict_batch(self, *args, **kw):
        self.entered.set()
        self.gate.wait(60)          # not for ever: a test that never opens the gate fails rather than hangs
        return super().predict_batch(*args, **kw)


@pytest.fixture
def gated_server(steered_model):
    """A server whose model waits at a gate (GatedPredictor) -> (server, its predictor)."""
    predictor = GatedPredictor(str(steered_model), "none")
    cfg = ServeConfig(model=str(steered_model), face="none", port=0, max_frame_bytes=MAX_FRAME)
    with ServerThread(create_app(cfg, predictor), cfg) as srv:
        try:
            yield srv, predictor
        finally:
            predictor.gate.set()    # the worker finishes its batch, so the server stops at once


def ws_url(srv, path="/ws", **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return srv.url.replace("http", "ws", 1) + path + (f"?{q}" if q else "")


def recv(ws, kind: str | None = None, timeout: float = 20.0) -> dict:
    """Next event (of `kind`, skipping others)."""
    end = time.monotonic() + timeout
    while True:
        ev = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        if kind is None or ev["type"] == kind:
            return ev


def until(ws, kind: str) -> list[dict]:
    """The events up to and including the next one of `kind`."""
    evs = [json.loads(ws.recv(timeout=20))]
    while evs[-1]["type"] != kind:
        evs.append(json.loads(ws.recv(timeout=20)))
    return evs


@contextlib.contextmanager
def open_ws(srv, path="/ws", **query):
    """-> (connection, its hello event)."""
    with ws_connect(ws_url(srv, path, **query), open_timeout=20, max_size=None) as ws:
        yield ws, recv(ws, "hello")


# ------------------------------------------------------------------------------------------ HTTP

def test_health_and_model(server, steered_model):
    r = httpx.get(server.url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    m = httpx.get(server.url + "/model", timeout=10).json()
    assert m["name"] == "vrfer-cnn-small" and m["classes"] == list(CLASSES)
    assert m["input"]["shape"] == [1, 24, 48] and m["input"]["input_mode"] == "visible-half"
    assert m["version"] == weights_fingerprint(steered_model)[:12] and m["vrfer_version"]   # what profiles name


def test_predict_real_face_raw_and_multipart(server, faces):
    r = httpx.post(server.url + "/predict", content=faces[0], headers={"Content-Type": "image/jpeg"}, timeout=20)
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["type"] == "prediction" and len(ev["faces"]) == 1
    face = ev["faces"][0]
    assert set(face["probs"]) == set(CLASSES) and abs(sum(face["probs"].values()) - 1) < 1e-3
    assert face["label"] == "happiness"              # the steered model's answer for faces[0]
    assert len(face["box"]) == 4
    r = httpx.post(server.url + "/predict?crop=1", files={"image": ("f.jpg", faces[1], "image/jpeg")}, timeout=20)
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["faces"][0]["label"] == "sadness"
    assert ev["crop"].startswith("data:image/png;base64,")


def test_classes_and_prior_per_request_and_per_connection(server, faces):
    r = httpx.post(server.url + "/predict?classes=neutral,sadness", content=faces[0], timeout=20).json()
    face = r["faces"][0]
    assert face["label"] in ("neutral", "sadness")   # the steered model says happiness: not in the set
    assert all(v == 0 for c, v in face["probs"].items() if c not in ("neutral", "sadness"))
    r = httpx.post(server.url + "/predict?prior=uniform", content=faces[0], timeout=20)
    assert r.status_code == 400 and r.json()["code"] == "bad_param"          # no training prior stored
    assert "training prior" in r.json()["message"]
    with open_ws(server, classes="neutral,sadness") as (ws, hello):
        assert hello["config"]["classes"] == ["neutral", "sadness"]
        ws.send(faces[0])
        ev = recv(ws, "prediction")
        assert ev["faces"][0]["label"] in ("neutral", "sadness")
        assert ev["faces"][0]["smoothed_label"] in ("neutral", "sadness")
        ws.send(json.dumps({"type": "config", "classes": ["boredom"]}))
        assert recv(ws, "error")["code"] == "bad_param"
        ws.send(faces[0])                                                     # the old settings stay
        assert recv(ws, "prediction")["faces"][0]["label"] in ("neutral", "sadness")
    with ws_connect(ws_url(server, classes="boredom"), open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=10))["code"] == "bad_param"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4400


def test_predict_bad_inputs(server, faces):
    r = httpx.post(server.url + "/predict", content=b"definitely not an image", timeout=10)
    assert r.status_code == 400 and r.json()["code"] == "bad_image"
    r = httpx.post(server.url + "/predict", content=b"\xff" * (MAX_FRAME + 1), timeout=10)
    assert r.status_code == 413 and r.json()["code"] == "frame_too_large"
    r = httpx.post(server.url + "/predict", files={"note": (None, "hello")}, timeout=10)
    assert r.status_code == 400 and r.json()["code"] == "bad_message"
    r = httpx.post(server.url + "/predict", content=faces[0][: len(faces[0]) // 3], timeout=10)  # truncated
    assert r.status_code in (200, 400)                # PIL may still decode a truncated JPEG's top
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_dns_rebinding_host_is_refused(server):
    r = httpx.get(server.url + "/model", headers={"Host": "attacker.example"}, timeout=10)
    assert r.status_code == 403


# ------------------------------------------------------------------------------------------ WebSocket

def test_ws_frame_gives_prediction(server, faces):
    with open_ws(server, crop=1) as (ws, hello):
        assert hello["classes"] == list(CLASSES) and hello["max_frame_bytes"] == MAX_FRAME
        ws.send(faces[0])
        ev = recv(ws, "prediction")
        assert ev["frame"] == 1 and isinstance(ev["time"], float)
        f = ev["faces"][0]
        assert len(f["probs"]) == 8 and len(f["smoothed"]) == 8
        assert f["label"] == "happiness" and ev["label"] == "happiness"
        from PIL import Image
        png = Image.open(io.BytesIO(base64.b64decode(ev["crop"].split(",", 1)[1])))
        assert png.size == (96, 48)                   # the visible half, 2x
        # a JSON frame with the client's own id
        ws.send(json.dumps({"type": "frame", "id": "abc", "data": base64.b64encode(faces[1]).decode()}))
        ev = recv(ws, "prediction")
        assert ev["frame"] == "abc" and ev["faces"][0]["label"] == "sadness"
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert recv(ws, "pong")["id"] == 7


def test_ws_arrays_for_unity(server, faces):
    with open_ws(server, arrays=1) as (ws, hello):
        assert hello["config"]["arrays"] is True
        ws.send(faces[0])
        f = recv(ws, "prediction")["faces"][0]
        assert isinstance(f["probs"], list) and len(f["probs"]) == 8 and len(f["smoothed"]) == 8
        assert hello["classes"][int(np.argmax(f["probs"]))] == f["label"] == "happiness"
    r = httpx.post(server.url + "/predict?arrays=1", content=faces[1], timeout=20)
    assert r.json()["faces"][0]["probs"][CLASSES.index("sadness")] > 0.5


def test_ws_change_event_debounced(server, faces):
    changes, labels = [], []
    with open_ws(server, alpha=0.5, threshold=0.6, min_frames=3) as (ws, _):
        for i, data in enumerate([faces[0]] * 4 + [faces[1]] * 6, start=1):
            ws.send(data)
            evs = until(ws, "prediction")
            # a frame's change event is queued with its prediction, so it comes before the pong of a later ping
            ws.send(json.dumps({"type": "ping", "id": i}))
            evs += until(ws, "pong")
            assert [e["frame"] for e in evs if e["type"] == "prediction"] == [i]
            labels += [e["faces"][0]["smoothed_label"] for e in evs if e["type"] == "prediction"]
            changes += [(i, e["from"], e["to"]) for e in evs if e["type"] == "change"]
    # happiness leads from frame 1 (prob ~1 > 0.6): the change fires on the 3rd frame, not before.
    # sadness: smoothed 0.5, 0.75, 0.875, ... -> over 0.6 from the 6th frame; 3 frames later (8th).
    assert changes == [(3, None, "happiness"), (8, "happiness", "sadness")], (changes, labels)


def test_ws_change_thresholds_from_config_message(server, faces):
    with open_ws(server) as (ws, _):
        ws.send(json.dumps({"type": "config", "alpha": 1, "threshold": 0.9, "min_frames": 1}))
        cfg = recv(ws, "config")["config"]
        assert cfg["alpha"] == 1.0 and cfg["min_frames"] == 1
        ws.send(faces[1])
        recv(ws, "prediction")
        ch = recv(ws, "change", timeout=10)
        assert ch["to"] == "sadness" and ch["frame"] == 1 and ch["confidence"] >= 0.9


def test_ws_bad_inputs_then_still_works(server, faces):
    with open_ws(server) as (ws, _):
        ws.send(b"\x00" * (MAX_FRAME + 10))
        assert recv(ws, "error")["code"] == "frame_too_large"
        ws.send(b"this is not an image")
        ev = recv(ws, "error")
        assert ev["code"] == "bad_image" and ev["frame"] == 2
        ws.send("{not json")
        assert recv(ws, "error")["code"] == "bad_message"
        ws.send("[1, 2, 3]")
        assert recv(ws, "error")["code"] == "bad_message"
        ws.send(json.dumps({"type": "launch_missiles"}))
        assert recv(ws, "error")["code"] == "unknown_type"
        ws.send(json.dumps({"type": "config", "alpha": 5}))
        assert recv(ws, "error")["code"] == "bad_param"
        ws.send(json.dumps({"type": "frame", "data": "!!!not base64!!!"}))
        assert recv(ws, "error")["code"] == "bad_image"
        ws.send(json.dumps({"type": "subscribe"}))
        assert recv(ws, "error")["code"] == "no_source"
        png = io.BytesIO()
        from PIL import Image
        Image.new("L", (20000, 20000)).save(png, format="PNG", optimize=False)   # 400 Mpx, a small file
        if len(png.getvalue()) <= MAX_FRAME:
            ws.send(png.getvalue())
            assert recv(ws, "error")["code"] == "image_too_large"
        ws.send(faces[0])
        ev = recv(ws, "prediction")
        assert ev["faces"][0]["label"] == "happiness"
    # a message beyond the WebSocket size cap closes that socket (1009) but not the server
    with open_ws(server) as (ws, _):
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            # the server may close while the client is still writing, so the send itself can raise
            ws.send(b"\x00" * (5 * MAX_FRAME))
            for _ in range(10):
                ws.recv(timeout=10)
        assert e.value.rcvd is None or e.value.rcvd.code == 1009
    with open_ws(server) as (ws, _):
        ws.send(faces[1])
        assert recv(ws, "prediction")["faces"][0]["label"] == "sadness"


def test_bad_query_params_are_refused(server):
    with ws_connect(ws_url(server, alpha="zero"), open_timeout=20) as ws:
        ev = json.loads(ws.recv(timeout=10))
        assert ev["type"] == "error" and ev["code"] == "bad_param"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4400


def test_slow_consumer_keeps_bounded_queues(gated_server, faces):
    """300 frames come faster than the model answers, and the client reads no event meanwhile: the server keeps
    one pending frame and a short outbox per connection, and counts what it dropped. The model is held at its
    gate while the frames arrive, so the counts are exact: frame 1 is with the model, the newest frame waits,
    the 298 in between are dropped as stale."""
    srv, predictor = gated_server
    n = 300
    with open_ws(srv, crop=1) as (ws, hello):
        sid = hello["session"]
        ws.send(faces[0])
        assert predictor.entered.wait(30)             # frame 1 is with the model, which waits at the gate
        for i in range(1, n):
            ws.send(faces[i % 2])
        ws.send(json.dumps({"type": "stats"}))        # answered after every frame sent before it was received
        held = recv(ws, "stats")
        assert (held["received"], held["processed"], held["dropped"], held["pending"]) == (n, 0, n - 2, 1)
        row = {s["id"]: s for s in httpx.get(srv.url + "/stats", timeout=10).json()["sessions"]}[sid]
        assert row["pending"] == 1 and row["outbox"] <= 16 and row["max_outbox"] <= 16
        snap = httpx.get(srv.url + "/stats", timeout=10).json()
        assert snap["engine"]["max_queue"] <= snap["engine"]["max_pending"]
        predictor.gate.set()
        preds = [recv(ws, "prediction"), recv(ws, "prediction")]      # frame 1's answer, then the newest's
        assert [p["frame"] for p in preds] == [1, n] and all(p["dropped"] == n - 2 for p in preds)
        ws.send(json.dumps({"type": "stats"}))
        evs = until(ws, "stats")
        assert not [e for e in evs if e["type"] == "prediction"]       # the stale frames were never answered
        done = evs[-1]
        assert (done["received"], done["processed"], done["dropped"], done["errors"], done["pending"]) == \
            (n, 2, n - 2, 0, 0)


def test_many_clients_at_once(server, faces):
    async def client(k: int):
        from websockets.asyncio.client import connect
        async with connect(ws_url(server), open_timeout=30, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            labels = []
            for i in range(5):
                await ws.send(faces[(k + i) % 2])
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if ev["type"] == "prediction":
                        assert ev["frame"] == i + 1
                        labels.append(ev["faces"][0]["label"])
                        break
            return labels

    async def main():
        return await asyncio.gather(*(client(k) for k in range(12)))

    for k, labels in enumerate(asyncio.run(main())):
        assert labels == [("happiness", "sadness")[(k + i) % 2] for i in range(5)]


def test_the_event_loop_answers_while_the_model_works(gated_server, faces):
    """Inference runs off the event loop: while the model is busy with a frame (held at its gate), HTTP requests
    and WebSocket messages are answered; the frame's answer comes when the model is done."""
    srv, predictor = gated_server
    with open_ws(srv) as (ws, _):
        ws.send(faces[0])
        assert predictor.entered.wait(30)             # the model has the frame and waits at the gate
        assert httpx.get(srv.url + "/health", timeout=10).status_code == 200
        ws.send(json.dumps({"type": "ping", "id": 1}))
        pong = recv(ws)
        assert pong["type"] == "pong" and pong["id"] == 1      # the first event: the frame is not answered yet
        assert not predictor.gate.is_set()
        predictor.gate.set()
        ev = recv(ws, "prediction")
        assert ev["frame"] == 1 and ev["faces"][0]["label"] == "happiness"


# ------------------------------------------------------------------------------------------ auth

@pytest.fixture(scope="module")
def token_server(steered_model):
    cfg = ServeConfig(model=str(steered_model), face="none", port=0, token="s3cret")
    with ServerThread(create_app(cfg), cfg) as srv:
        yield srv


def test_token_required(token_server, faces):
    url = token_server.url
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    r = httpx.get(url + "/model", timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url + "/model", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(url + "/model", headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
    assert httpx.get(url + "/model?token=s3cret", timeout=10).status_code == 200
    assert httpx.post(url + "/predict", content=faces[0], timeout=10).status_code == 401
    with ws_connect(ws_url(token_server), open_timeout=20) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4401
    with ws_connect(ws_url(token_server, token="nope"), open_timeout=20) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4401
    with ws_connect(ws_url(token_server), additional_headers={"Authorization": "Bearer s3cret"},
                    open_timeout=20) as ws:
        assert recv(ws, "hello")["type"] == "hello"
        ws.send(faces[0])
        assert recv(ws, "prediction")["faces"][0]["label"] == "happiness"
    with open_ws(token_server, token="s3cret") as (ws, hello):
        assert hello["model"] == "vrfer-cnn-small"


def test_connection_limit(steered_model):
    cfg = ServeConfig(model=str(steered_model), face="none", port=0, max_connections=2)
    with ServerThread(create_app(cfg), cfg) as srv:
        with open_ws(srv), open_ws(srv):
            with ws_connect(ws_url(srv), open_timeout=20) as ws:
                with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                    ws.recv(timeout=10)
                assert e.value.rcvd.code == 1013
        end = time.monotonic() + 10                   # both closed: room again
        while httpx.get(srv.url + "/health", timeout=10).json()["connections"] and time.monotonic() < end:
            time.sleep(0.05)
        with open_ws(srv) as (ws, hello):
            assert hello["type"] == "hello"


def test_cross_origin_browser_pages_are_refused(server):
    with ws_connect(ws_url(server), origin="http://evil.example", open_timeout=20) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4403
    same = server.url                        # the demo page's own origin is fine
    with ws_connect(ws_url(server), origin=same, open_timeout=20) as ws:
        assert recv(ws, "hello")["type"] == "hello"


def test_non_local_host_needs_token(steered_model, capsys):
    from vrfer.cli import main
    from vrfer.errors import VrferError
    from vrfer.serve.app import check_bind

    assert main(["serve", "--host", "0.0.0.0", "--model", str(steered_model), "--face", "none"]) == 2
    assert "--token" in capsys.readouterr().err
    with pytest.raises(VrferError):
        check_bind(ServeConfig(host="192.168.1.20"))
    check_bind(ServeConfig(host="192.168.1.20", token="t"))
    check_bind(ServeConfig(host="::1"))
    check_bind(ServeConfig(host="localhost"))


def test_cli_serve_subprocess_with_token(steered_model, faces, tmp_path):
    """The real command: `vrfer serve` in its own process, a token, then a clean shutdown."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VRFER_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "vrfer", "serve", "--port", str(port), "--face", "none",
                             "--model", str(steered_model), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < end, "server did not come up"
            time.sleep(0.3)
        assert httpx.get(url + "/model", timeout=10).status_code == 401
        r = httpx.post(url + "/predict", content=faces[0], headers={"Authorization": "Bearer tok"}, timeout=20)
        assert r.status_code == 200 and r.json()["faces"][0]["label"] == "happiness"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_flags(steered_model, capsys):
    from vrfer.cli import main
    assert main(["serve", "--model", str(steered_model), "--alpha", "3"]) == 2
    assert "alpha" in capsys.readouterr().err
    assert main(["serve", "--model", str(steered_model), "--video", "/nonexistent.mp4"]) == 2
    assert main(["serve", "--model", str(steered_model), "--face", "1,2"]) == 2
    capsys.readouterr()
    for flags, says in ((["--prior", "uniform"], "training prior"), (["--classes", "boredom"], "boredom"),
                        (["--prior", "/nonexistent.json"], "--prior")):
        assert main(["serve", "--model", str(steered_model), "--port", "0", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0]


# ------------------------------------------------------------------------------------------ broadcast

@pytest.fixture(scope="module")
def video_server(steered_model, faces, tmp_path_factory):
    import cv2
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 200))
    assert writer.isOpened()                          # OpenCV (a dependency) writes MJPG itself
    for data in faces[:2]:
        img = cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (200, 200))
        for _ in range(10):
            writer.write(img)
    writer.release()
    cfg = ServeConfig(model=str(steered_model), face="none", port=0, video=str(path), source_fps=20)
    with ServerThread(create_app(cfg), cfg) as srv:
        yield srv


def test_video_source_broadcasts_to_listeners(video_server):
    with open_ws(video_server, "/ws/events") as (a, hello), \
            open_ws(video_server, "/ws", threshold=0.6, min_frames=2) as (b, _):
        assert hello["source"].startswith("video:")
        assert recv(a, "subscribed")["source"] == hello["source"]
        b.send(json.dumps({"type": "subscribe"}))
        recv(b, "subscribed")
        seen = set()
        end = time.monotonic() + 30
        while time.monotonic() < end and not {"happiness", "sadness"} <= seen:
            ev = recv(a, "prediction")
            assert ev["source"] == hello["source"] and len(ev["faces"]) == 1
            seen.add(ev["faces"][0]["label"])
        assert {"happiness", "sadness"} <= seen      # the looped clip alternates the two faces
        ch = recv(b, "change", timeout=30)
        assert ch["source"] == hello["source"] and ch["to"] in ("happiness", "sadness")
        a.send(b"frames are not accepted here")
        assert recv(a, "error")["code"] == "bad_message"
    stats = httpx.get(video_server.url + "/stats", timeout=10).json()
    assert stats["source"]["broadcasts"] > 0


# ------------------------------------------------------------------------------------------ units

def test_debouncer_frames_and_seconds():
    d = Debouncer(threshold=0.6, min_frames=2, min_seconds=1.0)
    happy = np.eye(8)[1] * 0.7 + 0.3 / 8
    assert d.update(happy, now=0.0) is None
    assert d.update(happy, now=0.5) is None          # 2 frames but only 0.5 s
    ch = d.update(happy, now=1.0)
    assert ch is not None and ch.old is None and ch.new == "happiness" and ch.frames == 3
    low = np.eye(8)[3] * 0.4 + 0.6 / 8               # sadness leads, but below threshold
    assert all(d.update(low, now=2 + i) is None for i in range(5))
    sad = np.eye(8)[3] * 0.9
    assert d.update(sad, now=10) is None
    assert d.update(happy, now=10.5) is None         # interruption resets the count
    assert d.update(sad, now=11) is None
    assert d.update(sad, now=11.5) is None
    assert d.update(sad, now=12).new == "sadness"


def test_params():
    p = Params().updated({"alpha": "0.25", "crop": "1", "min_frames": "4", "ignored": "x"})
    assert p.alpha == 0.25 and p.crop is True and p.min_frames == 4
    for bad in ({"alpha": "0"}, {"threshold": "2"}, {"min_frames": "1.5"}, {"crop": "maybe"},
                {"alpha": "nan"}, {"min_seconds": "-1"}):
        with pytest.raises(ProtocolError):
            Params().updated(bad)


def test_a_face_of_an_event_is_the_face_predict_writes():
    """One result type (vrfer.results.FacePrediction): serve's faces are predict's JSON without source and frame,
    with one rounding, one label rule (the unrounded probabilities; the first class on a tie) and `held`."""
    from vrfer.results import FacePrediction
    from vrfer.serve.protocol import prediction_event
    probs = [0.1, 0.3, 0.3, 0.1, 0.1, 0.1 - 1e-9, 0.0, 1e-9]       # a tie: happiness comes first
    face = FacePrediction.of((1, 2, 30, 40), probs, CLASSES, smoothed=np.eye(8)[3], face_score=0.0, held=True,
                             source="cam:0", frame=4)
    d = face.to_dict()
    assert d["source"] == "cam:0" and d["frame"] == 4 and d["held"] is True and d["face_score"] == 0.0
    assert d["label"] == "happiness" and d["score"] == 0.3 and d["smoothed_label"] == "sadness"
    assert d["probs"]["contempt"] == 0.0 and d["probs"]["disgust"] == 0.1          # 6 decimals
    ev = prediction_event(4, [face])
    assert ev["faces"] == [{k: v for k, v in d.items() if k not in ("source", "frame")}]
    assert ev["label"] == "sadness"                                                # the smoothed label of face 0
    arrays = prediction_event(4, [face], arrays=True)["faces"][0]
    assert arrays["probs"] == list(d["probs"].values()) and arrays["smoothed"] == list(d["smoothed"].values())
    plain = FacePrediction.of((1, 2, 30, 40), probs, CLASSES).to_dict(where=False)
    assert plain["held"] is False and "face_score" not in plain and "smoothed" not in plain


# ------------------------------------------------------------------------------------------ face detection

@pytest.fixture(scope="module")
def detect_server(steered_model):
    predictor = Predictor(str(steered_model), "detect")
    predictor.pipeline.detector  # noqa: B018  (loads it now; it ships with vrfer, so a failure here is a failure)
    cfg = ServeConfig(model=str(steered_model), face="detect", port=0)
    with ServerThread(create_app(cfg, predictor), cfg) as srv:
        yield srv


@needs_data(FACES_DEV)
def test_detect_finds_faces_and_tracks_over_ws(detect_server):
    photo = sorted(FACES_DEV.glob("*.jpg"))[0].read_bytes()
    blank = _jpeg(np.full((240, 320, 3), 128, np.uint8))
    r = httpx.post(detect_server.url + "/predict?crop=1", content=photo, timeout=60).json()
    assert r["type"] == "prediction" and len(r["faces"]) >= 1, r
    x, y, w, h = r["faces"][0]["box"]
    assert 40 <= w <= r["width"] * 1.2 and 40 <= h <= r["height"] * 1.3
    r = httpx.post(detect_server.url + "/predict", content=blank, timeout=60).json()
    assert r["type"] == "prediction" and r["faces"] == [] and r["label"] is None   # no face is not an error
    with open_ws(detect_server) as (ws, _):
        boxes = []
        for _ in range(4):
            ws.send(photo)
            ev = recv(ws, "prediction", timeout=60)
            assert len(ev["faces"]) == 1                 # the tracker follows the main face
            boxes.append(ev["faces"][0]["box"])
        # tracked boxes stay on the face found by the full detection
        assert all(abs(b[0] - boxes[0][0]) < 0.3 * boxes[0][2] for b in boxes)
    with open_ws(detect_server, track=0) as (ws, hello):
        assert hello["config"]["track"] is False
        ws.send(blank)
        assert recv(ws, "prediction", timeout=60)["faces"] == []


# ------------------------------------------------------------------------------- calibration (issue 20)

def test_ws_calibration_captures_finishes_loads_and_clears(server, faces):
    """A connection calibrates to its wearer: frames captured per expression, a profile made from them and sent
    back (to be saved), the answers calibrated; a saved profile loads; clear returns to the plain answers. Other
    connections are not affected."""
    def fear_of(ws, frame):
        ws.send(frame)
        return recv(ws, "prediction")["faces"][0]["probs"]["fear"]

    with open_ws(server) as (ws, _), open_ws(server) as (other, _):
        plain = fear_of(ws, faces[0])
        ws.send(json.dumps({"type": "calibrate", "action": "start", "label": "fear", "frames": 3}))
        assert recv(ws, "calibration") == {"type": "calibration", "action": "start", "label": "fear", "frames": 3}
        for i in range(3):
            ws.send(faces[0])
            evs = until(ws, "prediction")     # one frame at a time: none is dropped as stale
        assert [e for e in evs if e["type"] == "calibration"] == [
            {"type": "calibration", "action": "captured", "label": "fear", "counts": {"fear": 3}}]
        ws.send(json.dumps({"type": "calibrate", "action": "start", "label": "anger", "frames": 2}))
        recv(ws, "calibration")
        for _ in range(2):
            ws.send(faces[1])
            evs = until(ws, "prediction")
        assert [e["counts"] for e in evs if e["type"] == "calibration"] == [{"fear": 3, "anger": 2}]
        ws.send(json.dumps({"type": "calibrate", "action": "finish", "person": "P"}))
        prof = recv(ws, "profile")["profile"]
        assert prof["format"] == "vrfer-profile" and prof["classes"] == ["anger", "fear"] and prof["person"] == "P"
        calibrated = fear_of(ws, faces[0])
        assert calibrated > plain + 0.01
        assert abs(fear_of(other, faces[0]) - plain) < 1e-6           # the other connection keeps its answers
        ws.send(json.dumps({"type": "calibrate", "action": "clear"}))
        recv(ws, "calibration")
        assert abs(fear_of(ws, faces[0]) - plain) < 1e-6
        other.send(json.dumps({"type": "calibrate", "action": "load", "profile": prof}))
        assert recv(other, "profile")["profile"] == prof
        assert abs(fear_of(other, faces[0]) - calibrated) < 1e-6       # a saved profile answers as it did


def test_ws_calibrate_load_accepts_what_serve_profile_accepts_for_an_exported_model(steered_model, faces, tmp_path):
    """A profile made with the PyTorch weights is bound to their fingerprint, which an exported .onnx file records:
    a server running that file takes the profile over the WebSocket, as `serve --profile` does."""
    from vrfer.export import export_model
    from vrfer.models import create_model
    torch_cfg = ServeConfig(model=str(steered_model), face="none", port=0, max_frame_bytes=MAX_FRAME)
    with ServerThread(create_app(torch_cfg), torch_cfg) as srv, open_ws(srv) as (ws, _):
        ws.send(json.dumps({"type": "calibrate", "action": "start", "label": "fear", "frames": 2}))
        recv(ws, "calibration")
        for _ in range(2):
            ws.send(faces[0])
            until(ws, "prediction")
        ws.send(json.dumps({"type": "calibrate", "action": "finish"}))
        prof = recv(ws, "profile")["profile"]
    onnx_file = export_model(create_model(str(steered_model)), tmp_path / "m.onnx", check=False).onnx
    cfg = ServeConfig(model=str(onnx_file), face="none", port=0, max_frame_bytes=MAX_FRAME)
    with ServerThread(create_app(cfg), cfg) as srv, open_ws(srv) as (ws, _):
        assert httpx.get(srv.url + "/model", timeout=10).json()["version"] == prof["model_sha256"][:12]
        ws.send(json.dumps({"type": "calibrate", "action": "load", "profile": prof}))
        assert recv(ws, "profile")["profile"]["model_sha256"] == prof["model_sha256"]


def test_ws_calibration_refusals_keep_the_connection(server, faces):
    with open_ws(server) as (ws, _):
        for msg, code in [({"type": "calibrate"}, "bad_message"),
                          ({"type": "calibrate", "action": "start", "label": "boredom"}, "bad_param"),
                          ({"type": "calibrate", "action": "start", "label": "fear", "frames": 0}, "bad_param"),
                          ({"type": "calibrate", "action": "finish"}, "bad_message"),
                          ({"type": "calibrate", "action": "load", "profile": {"format": "x"}}, "bad_param")]:
            ws.send(json.dumps(msg))
            assert recv(ws, "error")["code"] == code
        prof = {"format": "vrfer-profile", "version": 1, "model": "other", "model_sha256": "0" * 64,
                "classes": ["fear"], "counts": {"fear": 1}, "weight": [[0.0] * 256], "bias": [0.0]}
        ws.send(json.dumps({"type": "calibrate", "action": "load", "profile": prof}))
        err = recv(ws, "error")
        assert err["code"] == "bad_param" and "profile made for model 'other'" in err["message"]
        ws.send(faces[0])
        assert recv(ws, "prediction")["faces"][0]["label"] == "happiness"


def test_a_bad_classes_parameter_is_named_as_the_client_sent_it(server):
    r = httpx.post(server.url + "/predict?classes=neutral,boredom", content=b"x", timeout=10)
    assert r.status_code == 400 and "--classes" not in r.text and "unknown class 'boredom'" in r.text


# ----------------------------------------------------------------------- the wearer's reference (issue 31)

def test_ws_reference_set_clear_and_auto_give_the_apis_answers(steered_model, faces, tmp_path):
    """Each connection reads its wearer against its own reference: automatic by default (the model has a
    referenced head), or set by the client; the same frame and reference give the API's answer; clear turns it off;
    a reference of the wrong width is refused with bad_param and the connection goes on."""
    from vrfer.models.registry import load_checkpoint, save_model
    from vrfer.inference.pipeline import Pipeline
    from vrfer.inference.images import load_image
    from vrfer.recognizer import Recognizer
    from vrfer.personal.reference import ReferencedHead, with_head
    m = load_checkpoint(steered_model)
    rng = np.random.default_rng(0)
    d = m.classifier.in_features
    path = tmp_path / "ref.safetensors"
    save_model(m, path, with_head(m.cfg, ReferencedHead(rng.normal(0, 0.3, (8, d)), rng.normal(0, 0.3, 8), 0.7)))
    pipe = Pipeline(str(path), face="none", backend="torch")
    img = load_image(faces[1])
    vec = pipe.logits_and_features(pipe.crops(img, pipe.find_faces(img)))[1][0]
    api_ref = Recognizer(str(path), face="none", backend="torch", reference=vec).predict(faces[0])[0].probs
    api_off = Recognizer(str(path), face="none", backend="torch", reference="off").predict(faces[0])[0].probs
    cfg = ServeConfig(model=str(path), face="none", port=0, max_frame_bytes=MAX_FRAME)
    with ServerThread(create_app(cfg), cfg) as srv, open_ws(srv) as (ws, _):
        ws.send(json.dumps({"type": "reference", "action": "get"}))
        got = recv(ws, "reference")
        assert got["mode"] == "auto" and got["settled"] is False and got["reference"] is None
        ws.send(faces[0])
        first = recv(ws, "prediction")["faces"][0]["probs"]
        assert max(abs(first[c] - api_off[c]) for c in CLASSES) < 1e-5      # warm-up: the generic answer
        ws.send(json.dumps({"type": "reference", "action": "set", "reference": [float(v) for v in vec]}))
        assert recv(ws, "reference")["mode"] == "fixed"
        ws.send(faces[0])
        probs = recv(ws, "prediction")["faces"][0]["probs"]
        assert max(abs(probs[c] - api_ref[c]) for c in CLASSES) < 1e-5
        assert max(abs(api_ref[c] - api_off[c]) for c in CLASSES) > 1e-3    # the reference changed the answer
        ws.send(json.dumps({"type": "reference", "action": "set", "reference": [0.0] * (d - 1)}))
        err = recv(ws, "error")
        assert err["code"] == "bad_param" and f"{d} numbers" in err["message"]
        ws.send(json.dumps({"type": "reference", "action": "clear"}))
        assert recv(ws, "reference")["mode"] == "off"
        ws.send(faces[0])
        probs = recv(ws, "prediction")["faces"][0]["probs"]
        assert max(abs(probs[c] - api_off[c]) for c in CLASSES) < 1e-5
        ws.send(json.dumps({"type": "reference", "action": "nope"}))
        assert recv(ws, "error")["code"] == "bad_message"
