"""The demo page end to end in headless Chromium: a fake webcam (a .y4m made from real face photos) ->
getUserMedia -> canvas JPEG -> WebSocket -> the server's model -> probability bars and a label on the page.

Needs Debian's chromium + chromium-driver, which .ci/browser-deps.sh installs: without them the test skips
with its reason, and fails under CI (CI=true), where that script has run. VRFER_SKIP_BROWSER (which that
script honours too) makes it skip everywhere. selenium is in the `test` extra: a plain import.
Set VRFER_SCREENSHOT_DIR to keep the screenshot (demo.png) somewhere you can look at it;
VRFER_CHROMIUM / VRFER_CHROMEDRIVER point at other binaries.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import selenium  # noqa: F401  (the `test` extra)
from conftest import FACES_DEV, need, needs_data
from test_serve import make_steered_model

from vrfer.classes import CLASSES
from vrfer.serve.app import ServeConfig, ServerThread, create_app

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def _find(*names) -> str | None:
    for n in names:
        p = shutil.which(n) or (n if os.path.isfile(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


@pytest.fixture(scope="module")
def browser_paths():
    env_c, env_d = os.environ.get("VRFER_CHROMIUM"), os.environ.get("VRFER_CHROMEDRIVER")   # overrides
    chromium = _find(env_c) if env_c else _find("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
    driver = _find(env_d) if env_d else _find("/usr/bin/chromedriver", "chromedriver")
    if os.environ.get("VRFER_SKIP_BROWSER"):
        pytest.skip("VRFER_SKIP_BROWSER is set")
    need(bool(chromium and driver), "headless browser test needs Chromium and ChromeDriver (Debian: apt-get "
                                    "install chromium chromium-driver, or run .ci/browser-deps.sh)")
    return chromium, driver


def compose(img: np.ndarray, size=(640, 480)) -> np.ndarray:
    """A webcam-like frame: the face photo centred on a plain background."""
    from PIL import Image
    W, H = size
    canvas = Image.new("RGB", (W, H), (52, 58, 66))
    side = int(H * 0.85)
    canvas.paste(Image.fromarray(img).convert("RGB").resize((side, side), Image.BICUBIC),
                 ((W - side) // 2, (H - side) // 2))
    return np.asarray(canvas)


def write_y4m(path: Path, frames: list[np.ndarray], frames_each: int = 12, fps: int = 10) -> Path:
    """RGB frames (H, W, 3) -> a YUV 4:2:0 (full-range BT.601) .y4m that Chromium plays as a fake webcam,
    looped; each frame is held for frames_each frames."""
    H, W = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            rgb = rgb.astype(np.float32)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
            v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            sub = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))  # noqa: E731
            planes = b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes()
                              for p in (y, sub(u), sub(v)))
            for _ in range(frames_each):
                f.write(b"FRAME\n" + planes)
    return path


def _as_sent(frame: np.ndarray) -> bytes:
    """The frame as the page sends it: 320 px wide JPEG."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(frame).resize((320, 240), Image.BILINEAR).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def steered_setup(tmp_path):
    """A model that reads two real faces as happiness and sadness, and a fake webcam clip alternating them.
    Two faces-dev photos: Chromium's webcam frames come out darker than _as_sent()'s, and the bundled photos
    (a headset over half the face) differ too little for the steered model to tell them apart after that."""
    from PIL import Image
    frames = [compose(np.asarray(Image.open(f))) for f in sorted(FACES_DEV.glob("*.jpg"))[:2]]
    model = make_steered_model(tmp_path / "m.safetensors", _as_sent(frames[0]), _as_sent(frames[1]))
    return model, write_y4m(tmp_path / "faces.y4m", frames)


def chrome(browser_paths, tmp_path, video):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = browser_paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}",
                                  f"--use-file-for-fake-video-capture={video}"]:
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")          # never let Selenium Manager look online
    return webdriver.Chrome(service=Service(driver_path), options=opts)


@pytest.mark.slow
@needs_data(FACES_DEV)
def test_demo_page_shows_live_labels(browser_paths, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model, video = steered_setup(tmp_path)
    cfg = ServeConfig(model=str(model), face="none", port=0)
    with ServerThread(create_app(cfg), cfg) as srv:
        driver = chrome(browser_paths, tmp_path, video)
        try:
            driver.set_page_load_timeout(60)
            driver.get(srv.url + "/")
            wait = WebDriverWait(driver, 90, poll_frequency=0.25)
            wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-predictions") or 0)
                       >= 8)
            label, data_label = driver.execute_script(   # read together: the page updates both per prediction
                "return [document.getElementById('label').textContent, document.body.dataset.label]")
            assert label in CLASSES and data_label == label
            assert driver.find_element(By.ID, "status").text == "connected"
            bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
            assert [b.get_attribute("data-cls") for b in bars] == list(CLASSES)
            assert driver.find_element(By.ID, "crop").get_attribute("src").startswith("data:image/png;base64,")
            assert driver.find_element(By.ID, "model").text == "vrfer-cnn-small"
            # the clip alternates two faces the model reads as happiness and sadness: both appear
            seen = {label}
            end = time.monotonic() + 60
            while time.monotonic() < end and not {"happiness", "sadness"} <= seen:
                seen.add(driver.find_element(By.TAG_NAME, "body").get_attribute("data-label"))
                time.sleep(0.2)
            assert {"happiness", "sadness"} <= seen, seen
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#changes li"))
            shot = tmp_path / "demo.png"
            driver.save_screenshot(str(shot))
            assert Image.open(shot).size[0] >= 800
            keep = os.environ.get("VRFER_SCREENSHOT_DIR")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / "demo.png")
            errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"] \
                if hasattr(driver, "get_log") else []
            assert not [e for e in errors if "favicon" not in e.get("message", "")], errors
        finally:
            driver.quit()


@pytest.mark.slow
@needs_data(FACES_DEV)
def test_demo_page_calibrates_the_wearer_step_by_step(browser_paths, tmp_path):
    """"Calibrate to me" asks for each expression in turn (contempt left out), the server makes the profile from
    the fake webcam's frames, and the page says its answers are calibrated and offers the profile to save."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model, video = steered_setup(tmp_path)
    cfg = ServeConfig(model=str(model), face="none", port=0)
    with ServerThread(create_app(cfg), cfg) as srv:
        driver = chrome(browser_paths, tmp_path, video)
        try:
            driver.set_page_load_timeout(60)
            driver.get(srv.url + "/")
            body = lambda: driver.find_element(By.TAG_NAME, "body")  # noqa: E731
            WebDriverWait(driver, 90, 0.25).until(lambda d: int(body().get_attribute("data-predictions") or 0) >= 3)
            driver.find_element(By.ID, "calibrate").click()
            asked = set()
            end = time.monotonic() + 150
            while time.monotonic() < end and body().get_attribute("data-calibration") != "done":
                asked.add(body().get_attribute("data-calibrating"))
                time.sleep(0.2)
            assert body().get_attribute("data-calibration") == "done"
            assert {c for c in CLASSES if c != "contempt"} <= asked
            state = driver.find_element(By.ID, "calibstate").text
            assert "calibrated (7 expressions" in state and "your relaxed face from" in state
            link = driver.find_element(By.ID, "saveprofile")
            assert link.is_displayed()
            profile = json.loads(driver.execute_async_script(
                "const done = arguments[0]; fetch(document.getElementById('saveprofile').href)"
                ".then(r => r.text()).then(done);"))
            assert profile["format"] == "vrfer-profile" and len(profile["classes"]) == 7
            n = int(body().get_attribute("data-predictions"))
            WebDriverWait(driver, 30, 0.25).until(lambda d: int(body().get_attribute("data-predictions")) > n + 3)
            shot = tmp_path / "calibrated.png"
            driver.save_screenshot(str(shot))
            keep = os.environ.get("VRFER_SCREENSHOT_DIR")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / "calibrated.png")
        finally:
            driver.quit()
