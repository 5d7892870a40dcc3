"""Make src/vrfer/pretrained/blazeface_short_range.onnx, the second face detector vrfer ships.

MediaPipe's BlazeFace short-range model (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face
Detection on Mobile GPUs"; Apache-2.0) ships as a TFLite file inside the mediapipe 0.10.14 wheel on PyPI
(mediapipe 1.x ships no models). vrfer runs it with onnxruntime, as its other networks, so it is converted
once, here, with tflite2onnx, and the result is checked against OpenCV's own TFLite reader.

    pip download --no-deps mediapipe==0.10.14 -d /tmp/whl
    python -m venv /tmp/conv && /tmp/conv/bin/pip install tflite2onnx onnx onnxruntime opencv-python-headless numpy
    /tmp/conv/bin/python tools/convert_blazeface.py /tmp/whl/mediapipe-0.10.14-*.whl

A development tool: vrfer itself never imports mediapipe or tflite2onnx, and nothing is downloaded at run time.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
OUT = Path(__file__).resolve().parents[1] / "src" / "vrfer" / "pretrained" / "blazeface_short_range.onnx"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    import cv2
    import onnxruntime as ort
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        tfl = Path(tmp) / "face_detection_short_range.tflite"
        with zipfile.ZipFile(argv[0]) as z:
            tfl.write_bytes(z.read(MEMBER))
        onnx_path = Path(tmp) / "blazeface.onnx"
        tflite2onnx.convert(str(tfl), str(onnx_path))

        # the converted graph must give what the TFLite file gives (OpenCV's reader, classic engine)
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
        net = cv2.dnn.readNetFromTFLite(str(tfl), 1)
        net.setInput(x)
        ref_reg, ref_cls = net.forward(["regressors", "classificators"])
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
        diff = max(float(np.abs(got["regressors"] - ref_reg).max()), float(np.abs(got["classificators"] - ref_cls).max()))
        print(f"largest difference from the TFLite graph: {diff:.2e}")
        if diff > 1e-3:
            print("conversion differs from the TFLite graph: not written")
            return 1
        OUT.write_bytes(onnx_path.read_bytes())
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
