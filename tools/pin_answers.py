"""Write tests/data/pinned_answers.json: the probabilities every bundled model gives the bundled sample photos,
through each backend (torch float32, ONNX float32, the shipped int8 graph), with face detection on the photo and
--face none on the FER+ crops. tests/test_pinned_answers.py holds later code to these numbers: rerun this only
when a change is meant to change answers, and say so in the commit."""

from __future__ import annotations

import json
from pathlib import Path

from vrfer.recognizer import Recognizer
from vrfer.inputs import samples_path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pinned_answers.json"
CASES = [("vrfer-lower", "torch"), ("vrfer-lower", "onnx"), ("vrfer-lower", "auto"), ("vrfer-full", "torch")]


def answers() -> dict:
    out = {}
    for model, backend in CASES:
        for path in sorted(samples_path().iterdir()):
            if path.suffix not in (".png", ".jpg"):
                continue
            face = "detect" if path.name.startswith("photo") else "none"
            pred = Recognizer(model, face=face, backend=backend).predict(path)[0]
            out[f"{model}|{backend}|{path.name}"] = {"box": list(pred.box), "probs": list(pred.probs.values())}
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(answers(), indent=1))
    print(f"wrote {OUT}")
