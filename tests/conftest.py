"""Shared fixtures. Tests that need real data find ../shared beside the repo and skip cleanly without it."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VRFER_SHARED", REPO.parent / "shared"))
FERPLUS = SHARED / "data" / "ferplus"

torch.set_num_threads(1)  # tests stay light on a 2-core machine


@pytest.fixture
def ferplus_root() -> Path:
    if not (FERPLUS / "FER2013Test" / "label.csv").is_file():
        pytest.skip(f"real FER+ not present at {FERPLUS} (set VRFER_SHARED to the folder holding data/ferplus)")
    return FERPLUS


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """Point vrfer's cache at a temporary folder, so a test never touches the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VRFER_CACHE", str(cache))
    return cache
