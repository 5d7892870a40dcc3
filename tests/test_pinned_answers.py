"""Answers do not move by accident: every bundled model, through torch, ONNX and the shipped int8 graph, gives the
bundled sample photos the probabilities pinned in tests/data/pinned_answers.json (written by
tools/pin_answers.py before the refactor of issue 22). On the machine that wrote them they are bit-identical;
another CPU's kernels may round differently, hence the tolerance."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from pin_answers import OUT, answers  # noqa: E402

TOL = 0.0 if os.environ.get("VRFER_PIN_EXACT") else 2e-6   # VRFER_PIN_EXACT=1: bit-identical, same machine


@pytest.fixture(scope="module")
def now() -> dict:
    return answers()


def test_every_pinned_case_is_still_answered(now):
    pinned = json.loads(OUT.read_text())
    assert sorted(now) == sorted(pinned)
    assert len(pinned) >= 30


def test_the_same_photos_get_the_same_boxes_and_probabilities(now):
    pinned = json.loads(OUT.read_text())
    worst = 0.0
    for key, want in pinned.items():
        got = now[key]
        assert got["box"] == want["box"], key
        worst = max(worst, float(np.abs(np.subtract(got["probs"], want["probs"])).max()))
    assert worst <= TOL, f"largest difference {worst:.2e}"
