"""One image, one answer: `vrfer predict` (torch and onnx), `vrfer explain --json`, `POST /predict`, a `/ws`
frame (tracking off), the Python API and examples/onnx_client.py (no vrfer inside) give the same
probabilities within 1e-5, for gray, colour, 16-bit, non-square and EXIF-rotated images, with --face none, a box and
detection. The bundled model and a bundled sample photo are used: both ship with vrfer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrfer.classes import CLASSES
from vrfer.cli import main
from vrfer.inference.images import load_image
from vrfer.recognizer import Recognizer
from vrfer.inputs import samples_path

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5
BOX = "30,20,230,280"
FACES = ("none", BOX, "detect")
MAX_DIFF: dict[str, float] = {}      # path -> the largest difference seen (printed at the end with -s)
PATHS = ("predict torch", "predict onnx", "predict --model exported.onnx", "explain --json", "POST /predict",
         "/ws (track=0)", "examples/onnx_client.py")      # what the agreement test compares with the API


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """The same face as colour JPEG, 8-bit gray PNG, 16-bit gray PNG, a non-square colour PNG and a
    JPEG stored on its side with an EXIF orientation."""
    d = tmp_path_factory.mktemp("images")
    src = samples_path() / "photo-happiness-Cameron_Diaz_0001.jpg"
    rgb = np.asarray(Image.open(src).convert("RGB"))
    gray = np.asarray(Image.open(src).convert("L"))
    rng = np.random.default_rng(0)
    g16 = gray.astype(np.uint16) * 256 + rng.integers(0, 256, gray.shape, dtype=np.uint16)   # low byte: noise
    out = {"colour": src, "gray": d / "gray.png", "16-bit": d / "gray16.png", "non-square": d / "tall.png"}
    Image.fromarray(gray).save(out["gray"])
    Image.fromarray(g16).save(out["16-bit"])
    Image.fromarray(rgb[:, 30:300]).save(out["non-square"])                               # 270 wide, 350 tall
    exif = Image.Exif()
    exif[0x0112] = 6                                  # stored on its side: viewers turn it 90 degrees clockwise
    out["exif-rotated"] = d / "rotated.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb[:, 30:300]))).save(out["exif-rotated"], exif=exif.tobytes(),
                                                                          quality=95)
    assert Image.open(out["16-bit"]).mode.startswith("I;16")
    return out


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    from vrfer.export.onnx import export_onnx
    return export_onnx("vrfer-lower", tmp_path_factory.mktemp("onnx") / "vrfer-lower.onnx")


@pytest.fixture(scope="module")
def servers():
    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    running = {}
    try:
        for face in FACES:
            cfg = ServeConfig(model="vrfer-lower", face=face if face != BOX else tuple(map(int, BOX.split(","))),
                              backend="torch", port=0)
            running[face] = ServerThread(create_app(cfg), cfg).start()
        yield {face: srv.url for face, srv in running.items()}
    finally:
        for srv in running.values():
            srv.stop()


def vec(probs) -> np.ndarray:
    return np.array([probs[c] for c in CLASSES]) if isinstance(probs, dict) else np.asarray(probs)


def cli_json(capsys, *argv) -> list[dict]:
    assert main([*map(str, argv)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def detected_args(face) -> list[str]:
    """The client has no detector: it is given the detector's box and landmarks (floats), from which it places
    the square by the file's crop rule."""
    return ["--detected", ",".join(repr(float(v)) for v in face.box),
            "--landmarks", ",".join(repr(float(v)) for v in np.asarray(face.landmarks).ravel())]


def agree(name: str, ref: np.ndarray, got, box_ref=None, box=None) -> None:
    d = float(np.abs(ref - vec(got)).max())
    MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), d)
    assert d <= TOL, f"{name}: max difference {d:.2g}"
    if box_ref is not None:
        assert list(box) == list(box_ref), f"{name}: box {box} != {box_ref}"


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["colour", "gray", "16-bit", "non-square", "exif-rotated"])
def test_every_path_gives_the_same_probabilities(kind, face, images, onnx_file, servers, tmp_path, capsys,
                                                 private_cache):
    import httpx
    from websockets.sync.client import connect

    path = images[kind]
    rec = Recognizer("vrfer-lower", face=face, backend="torch", threads=1)
    api = rec.predict(path)
    assert len(api) >= 1
    ref, box = vec(api[0].probs), list(api[0].box)
    if kind in ("colour", "exif-rotated") and face != "none":
        assert api[0].label == "happiness"                       # the sample's expression, through each path

    rows = cli_json(capsys, "predict", path, "--face", face, "--json", "--threads", 1, "--backend", "torch")
    agree("predict torch", ref, rows[0]["probs"], box, rows[0]["box"])
    rows = cli_json(capsys, "predict", path, "--face", face, "--json", "--threads", 1, "--backend", "onnx")
    agree("predict onnx", ref, rows[0]["probs"], box, rows[0]["box"])
    rows = cli_json(capsys, "predict", path, "--model", onnx_file, "--face", face, "--json", "--threads", 1)
    agree("predict --model exported.onnx", ref, rows[0]["probs"], box, rows[0]["box"])
    rows = cli_json(capsys, "explain", path, "--face", face, "--json", "--out", tmp_path)
    agree("explain --json", ref, rows[0]["probs"], box, rows[0]["box"])
    assert rows[0]["explained"] == api[0].label and Path(rows[0]["png"]).is_file()

    url = servers[face]
    r = httpx.post(url + "/predict", content=path.read_bytes(), timeout=60).json()
    agree("POST /predict", ref, r["faces"][0]["probs"], box, r["faces"][0]["box"])
    with connect(url.replace("http", "ws", 1) + "/ws?track=0", open_timeout=20, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=20))["type"] == "hello"
        ws.send(path.read_bytes())
        while (ev := json.loads(ws.recv(timeout=60)))["type"] != "prediction":
            pass
    agree("/ws (track=0)", ref, ev["faces"][0]["probs"], box, ev["faces"][0]["box"])

    if face == "detect":   # the client has no detector: it is given the detector's box and landmarks
        args = detected_args(rec.pipeline.find_faces(load_image(path))[0])
    else:
        args = ["--face", face]
    out = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_client.py"), str(onnx_file), str(path),
                          *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    agree("examples/onnx_client.py", ref, row["probs"], box, row["box"])
    assert row["square"] == list(api[0].square)          # the square the model read, as predict reports it (issue 33)


def test_the_client_applies_the_prior_and_classes_the_file_records(images, tmp_path, capsys, private_cache):
    from dataclasses import replace

    from vrfer.models import create_model, save_model
    model = create_model("vrfer-lower")
    fer_prior = [0.349, 0.291, 0.125, 0.121, 0.084, 0.005, 0.021, 0.005]
    path = tmp_path / "with-prior.safetensors"
    save_model(model, path, cfg=replace(model.cfg, extra={**model.cfg.extra, "train_prior": fer_prior}))
    post = ["--prior", "uniform", "--prior-tau", "0.7", "--classes", "neutral,sadness,anger,fear"]
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(path), "--out", str(onnx), *post]) == 0
    capsys.readouterr()
    for kind in ("colour", "non-square"):
        row = cli_json(capsys, "predict", images[kind], "--model", path, "--face", "none", "--json", *post,
                       "--backend", "torch")[0]
        plain = cli_json(capsys, "predict", images[kind], "--model", path, "--face", "none", "--json",
                         "--backend", "torch")[0]
        out = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_client.py"), str(onnx), str(images[kind])],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        agree("onnx_client, prior+classes", vec(row["probs"]), json.loads(out.stdout)["probs"])
        assert row["label"] in ("neutral", "sadness", "anger", "fear") and row["probs"]["happiness"] == 0
        assert np.abs(vec(row["probs"]) - vec(plain["probs"])).max() > 0.01    # the options did something


def test_the_client_imports_no_vrfer():
    src = (REPO / "examples" / "onnx_client.py").read_text()
    imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert imports and not any("vrfer" in ln for ln in imports)


def test_report_the_largest_differences(request):
    """Runs after the agreement test: every path it compares was measured, within TOL; prints the largest
    difference of each (pytest -s shows them)."""
    for name, d in sorted(MAX_DIFF.items()):
        print(f"  {name:<26} max |p - p_api| = {d:.2g}")
    if any(getattr(item, "originalname", None) == "test_every_path_gives_the_same_probabilities"
           for item in request.session.items):                  # selected in this run (not left out by -k)
        assert set(PATHS) <= set(MAX_DIFF), sorted(set(PATHS) - set(MAX_DIFF))
    assert all(d <= TOL for d in MAX_DIFF.values()), MAX_DIFF


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory) -> Path:
    """A profile (vrfer calibrate, PyTorch float32) of the bundled model, from two bundled photos."""
    samples = samples_path()
    prof = tmp_path_factory.mktemp("profile") / "me.json"
    assert main(["calibrate", f"happiness={samples / 'photo-happiness-Cameron_Diaz_0001.jpg'}",
                 f"surprise={samples / 'photo-surprise-Anna_Chicherova_0001.jpg'}", "--out", str(prof)]) == 0
    return prof


def client(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "examples" / "onnx_client.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_calibration_profile_gives_the_same_answer_through_predict_serve_and_the_api(images, profile_file,
                                                                                      capsys, private_cache):
    """A profile (vrfer calibrate) on the bundled model: the API, `vrfer predict --profile` and a server started
    with --profile answer alike. Under backend auto all three calibrate through the shipped int8 graph (it has
    the representation output), as the ONNX client does on that file."""
    import httpx

    from vrfer.inference.onnx_backend import OnnxClassifier
    from vrfer.inference.onnx_backend import bundled_int8
    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    prof = profile_file
    path = images["gray"]
    rec = Recognizer("vrfer-lower", profile=prof, threads=1)
    assert isinstance(rec.pipeline.classifier, OnnxClassifier)           # the int8 fast path keeps the profile
    assert rec.pipeline.classifier.path == str(bundled_int8("vrfer-lower"))
    api = rec.predict(path)[0]
    ref = vec(api.probs)
    rows = cli_json(capsys, "predict", path, "--profile", prof, "--json", "--threads", 1)
    agree("predict --profile", ref, rows[0]["probs"], api.box, rows[0]["box"])
    cfg = ServeConfig(model="vrfer-lower", profile=str(prof), port=0)
    srv = ServerThread(create_app(cfg), cfg).start()
    try:
        r = httpx.post(srv.url + "/predict", content=path.read_bytes(), timeout=60).json()
    finally:
        srv.stop()
    agree("POST /predict (serve --profile)", ref, r["faces"][0]["probs"], api.box, r["faces"][0]["box"])
    out = client(bundled_int8("vrfer-lower"), path, *detected_args(rec.pipeline.find_faces(load_image(path))[0]),
                 "--profile", prof)
    assert out.returncode == 0, out.stderr
    agree("onnx_client --profile (int8)", ref, json.loads(out.stdout)["probs"])
    plain = Recognizer("vrfer-lower", threads=1).predict(path)[0]
    assert float(np.abs(vec(plain.probs) - ref).max()) > 1e-4      # the profile is in the answer


@pytest.mark.parametrize("face", ["none", BOX])
@pytest.mark.parametrize("kind", ["colour", "gray"])
def test_a_calibration_profile_gives_the_same_answer_through_the_onnx_client_predict_onnx_and_the_api(
        kind, face, images, profile_file, onnx_file, capsys, private_cache):
    """The float ONNX graph calibrates as PyTorch does (1e-5): `vrfer predict --profile --backend onnx`, with the
    exported file as --model, and examples/onnx_client.py --profile; the int8 graph (backend auto) approximately."""
    prof, path = profile_file, images[kind]
    api = Recognizer("vrfer-lower", face=face, backend="torch", profile=prof, threads=1).predict(path)[0]
    ref, box = vec(api.probs), list(api.box)
    common = ["--face", face, "--json", "--threads", 1, "--profile", prof]
    rows = cli_json(capsys, "predict", path, "--backend", "onnx", *common)
    agree("predict --profile --backend onnx", ref, rows[0]["probs"], box, rows[0]["box"])
    rows = cli_json(capsys, "predict", path, "--model", onnx_file, *common)
    agree("predict --profile --model exported.onnx", ref, rows[0]["probs"], box, rows[0]["box"])
    out = client(onnx_file, path, "--face", face, "--profile", prof)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    agree("onnx_client --profile", ref, row["probs"], box, row["box"])
    int8 = cli_json(capsys, "predict", path, "--backend", "auto", *common)[0]
    assert float(np.abs(vec(int8["probs"]) - ref).max()) < 0.05 and int8["label"] == api.label
    plain = Recognizer("vrfer-lower", face=face, backend="torch", threads=1).predict(path)[0]
    assert float(np.abs(vec(plain.probs) - ref).max()) > 1e-4      # the profile is in the answer


def test_the_client_refuses_a_profile_of_other_weights_in_one_line(images, profile_file, onnx_file, tmp_path,
                                                                   capsys, private_cache):
    import onnx
    d = json.loads(profile_file.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**d, "model_sha256": "0" * 64}))
    out = client(onnx_file, images["gray"], "--profile", other)
    assert out.returncode == 2 and out.stdout == ""
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "profile made for model" in err[0] and "calibrate again" in err[0]
    assert main(["predict", str(images["gray"]), "--model", str(onnx_file), "--face", "none", "--profile",
                 str(other)]) == 2                                   # vrfer refuses it the same way
    assert "profile made for model" in capsys.readouterr().err
    # a file that records no fingerprint (an older export) cannot vouch for any profile: refused too
    m = onnx.load(str(onnx_file))
    keep = [(p.key, p.value) for p in m.metadata_props if p.key != "vrfer_model_sha256"]
    del m.metadata_props[:]
    for k, v in keep:
        m.metadata_props.add(key=k, value=v)
    old = tmp_path / "unrecorded.onnx"
    onnx.save(m, str(old))
    out = client(old, images["gray"], "--profile", profile_file)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "not recorded" in out.stderr
    assert main(["predict", str(images["gray"]), "--model", str(old), "--face", "none", "--profile",
                 str(profile_file)]) == 2
    assert "records no model fingerprint" in capsys.readouterr().err


def test_a_graph_without_the_representation_gives_way_to_pytorch_under_auto_only(profile_file, onnx_file, tmp_path,
                                                                                 monkeypatch, private_cache):
    """A graph exported before the representation output (say an older shipped int8 file): backend auto
    calibrates with the PyTorch model of the same weights; the file itself, as --model, is refused."""
    import onnx

    import vrfer.inference.loader
    from vrfer.errors import VrferError
    from vrfer.inference.pipeline import Pipeline
    m = onnx.load(str(onnx_file))
    kept = [o for o in m.graph.output if o.name != "representation"]
    del m.graph.output[:]
    m.graph.output.extend(kept)
    old = tmp_path / "two-outputs.onnx"
    onnx.save(m, str(old))
    monkeypatch.setattr(vrfer.inference.loader, "bundled_int8", lambda *args: old)   # where the loader looks it up
    assert type(Pipeline("vrfer-lower", face="none").classifier).__name__ == "OnnxClassifier"
    calibrated = Pipeline("vrfer-lower", face="none", profile=profile_file)
    assert type(calibrated.classifier).__name__ == "TorchClassifier"
    with pytest.raises(VrferError, match="no `representation` output"):
        Pipeline(str(old), face="none", profile=profile_file)


def test_a_wearers_reference_gives_the_same_answer_through_the_api_predict_and_the_onnx_client(
        images, onnx_file, tmp_path, capsys, private_cache):
    """A reference-only profile (vrfer calibrate neutral=...) read by the bundled model's referenced head: the API,
    `vrfer predict --reference` on the float ONNX graph and on the exported file, and examples/onnx_client.py
    --reference give the same answer (1e-5), which differs from the plain one (serve: tests/test_serve.py)."""
    ref_file = tmp_path / "relaxed.json"
    assert main(["calibrate", f"neutral={samples_path() / 'fer-neutral-fer0032232.png'}", "--face", "none",
                 "--out", str(ref_file)]) == 0
    capsys.readouterr()
    path = images["gray"]
    api = Recognizer("vrfer-lower", face="none", backend="torch", reference=ref_file, threads=1).predict(path)[0]
    ref = vec(api.probs)
    common = ["--face", "none", "--json", "--threads", 1, "--reference", ref_file]
    rows = cli_json(capsys, "predict", path, "--backend", "onnx", *common)
    agree("predict --reference --backend onnx", ref, rows[0]["probs"])
    rows = cli_json(capsys, "predict", path, "--model", onnx_file, *common)
    agree("predict --reference --model exported.onnx", ref, rows[0]["probs"])
    out = client(onnx_file, path, "--reference", ref_file)
    assert out.returncode == 0, out.stderr
    agree("onnx_client --reference", ref, json.loads(out.stdout)["probs"])
    plain = Recognizer("vrfer-lower", face="none", backend="torch", reference="off", threads=1).predict(path)[0]
    assert float(np.abs(vec(plain.probs) - ref).max()) > 1e-4      # the reference is in the answer
