"""Shared fixtures, and the one place that says where the real data lives and what a missing piece means.

What a test may need, and what happens without it:

- the declared dependencies (pyproject.toml: the core list and the `test` extra) and what ships inside vrfer
  (the bundled models, the face detectors, the sample photos): plain imports and loads. A missing one is a
  broken install, so it fails, here and in CI.
- the real data (../shared/data beside the repository, or VRFER_SHARED): `need()`, through the `ferplus_root`
  fixture or the `needs_data(...)` mark. Without it a test skips with its reason (`pytest -rs` lists them);
  under CI (CI=true) it fails instead, since CI has the data and a test that did not run must not pass.
- the headless browser (Debian's chromium, installed by .ci/browser-deps.sh): `need()` as well.
"""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VRFER_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FERPLUS = DATA / "ferplus"
FER_TEST = FERPLUS / "FER2013Test"                 # the FER+ test faces (48x48 PNGs)
FACES_DEV = DATA / "faces-dev" / "images"          # face photos (350x350 JPEGs)
CKPLUS = DATA / "ckplus48"
TAIWANESE = DATA / "taiwanese-dev"

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

torch.set_num_threads(1)  # tests stay light on a 2-core machine


def need(present: bool, reason: str) -> None:
    """Go on when `present`; otherwise skip with `reason`, or under CI (CI=true) fail with it."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{reason}; under CI (CI=true) this is a failure, not a skip", pytrace=False)
    skip = pytest.skip.Exception(reason)
    skip._use_item_location = True    # `-rs` names the test, not this line (as pytest does for fixtures' skips)
    raise skip


def need_data(path: Path) -> Path:
    """`path` (a file or folder of the real data), or need()'s skip/failure naming it."""
    need(path.exists(), f"real data not present: {path} (set VRFER_SHARED to the folder holding data/)")
    return path


def needs_data(*paths: Path) -> pytest.MarkDecorator:
    """Mark a test that reads these paths of the real data: need_data() runs on each before the test."""
    return pytest.mark.needs_data(*paths)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data(*paths): the test reads these files of ../shared/data")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_data"):
        for path in mark.args:
            need_data(path)


@pytest.fixture
def ferplus_root() -> Path:
    need_data(FERPLUS / "FER2013Test" / "label.csv")
    return FERPLUS


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """Point vrfer's cache at a temporary folder, so a test never touches the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VRFER_CACHE", str(cache))
    return cache
