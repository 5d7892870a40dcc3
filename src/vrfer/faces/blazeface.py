"""MediaPipe's BlazeFace short-range face detector: RetinaFaceDetector's fast second opinion behind a headset
(vrfer.faces.retinaface), and a detector of its own in the registry ("blazeface", vrfer.faces.registry)."""

from __future__ import annotations

import threading

import numpy as np

from ..errors import VrferError
from .colour import to_bgr
from .geometry import Face
from .weights import pretrained_onnx
from ..threads import ort_options


def _blaze_anchors() -> np.ndarray:
    """BlazeFace short-range anchor centres (896, 2), in units of the input side: a 16x16 grid with 2
    anchors per cell (stride 8), then an 8x8 grid with 6 (stride 16), as MediaPipe's SSD anchor options."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        yy, xx = np.meshgrid(c, c, indexing="ij")
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per_cell, 0))
    return np.concatenate(out)


class BlazeFace:
    """MediaPipe's BlazeFace short-range face detector (onnxruntime): one 128x128 pass over the whole image.

    Shipped as vrfer/pretrained/blazeface_short_range.onnx (Apache-2.0; converted from the mediapipe 0.10.14
    wheel by tools/convert_blazeface.py; $VRFER_BLAZEFACE_ONNX overrides it). It sees faces best at a
    quarter to a half of the image side, so `detect` can pad the image first (pad = border per side, as a
    share of the long side) for faces that fill it. Its boxes are mapped to RetinaFace's geometry (what
    the crop, vrfer.faces.square_box, was measured on): measured on faces-dev headset photos, BlazeFace's
    box behind a headset is 0.84-0.99 x the width of RetinaFace's box of the clean face (medians by image
    kind; benchmarks/detector_variants.py), with the same centre and bottom edge; 0.96 sits between; the height is set from the width by RetinaFace's median aspect (w = 0.73 h).
    """

    SIZE = 128
    WIDTH_PER_RETINAFACE = 0.96
    RETINAFACE_ASPECT = 0.73

    def __init__(self, threads: int | None = None, nms: float = 0.3):
        import onnxruntime as ort

        graph = pretrained_onnx("blazeface_short_range.onnx", "VRFER_BLAZEFACE_ONNX", "BlazeFace face detector")
        try:
            self.session = ort.InferenceSession(graph, ort_options(threads), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise VrferError(f"BlazeFace face detector: onnxruntime cannot load it ({e})") from None
        self.input_name = self.session.get_inputs()[0].name
        names = {o.name for o in self.session.get_outputs()}
        if not {"regressors", "classificators"} <= names:
            raise VrferError(f"BlazeFace face detector: the graph's outputs are {sorted(names)}, not regressors "
                             "and classificators (use the shipped file, or RetinaFaceDetector(blazeface=False))")
        self.anchors = _blaze_anchors()
        self.nms = nms
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray, threshold: float = 0.5, pad: float = 0.0) -> list[Face]:
        """Faces in a gray or BGR uint8 image scoring >= threshold, best first, boxes in RetinaFace's geometry
        (image pixels). No landmarks: BlazeFace's six keypoints are not RetinaFace's five, and behind a headset its
        nose is 0.20 box widths too low (median over faces-dev headset photos, against RetinaFace's on the clean
        photo; RetinaFace's: 0.04), too far off to place the keypoint crop (keypoint_square) from."""
        import cv2
        bgr = to_bgr(np.asarray(bgr))
        h, w = bgr.shape[:2]
        p = int(round(pad * max(h, w)))
        side = max(h, w) + 2 * p
        s = self.SIZE / side
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        sx, sy = nw / w, nh / h                      # the scales actually applied (rounded sizes)
        # letterbox: the image scaled into the 128x128 input, centred, black around it (as MediaPipe does)
        ox, oy = (self.SIZE - nw) // 2, (self.SIZE - nh) // 2
        x = np.zeros((self.SIZE, self.SIZE, 3), np.uint8)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        x[oy:oy + nh, ox:ox + nw] = cv2.resize(bgr, (nw, nh), interpolation=interp)
        x = (x[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]   # RGB in [-1, 1]
        with self._lock:
            outs = dict(zip((o.name for o in self.session.get_outputs()),
                            self.session.run(None, {self.input_name: np.ascontiguousarray(x)})))
        reg, logit = outs["regressors"][0], outs["classificators"][0, :, 0]
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -80.0, 80.0)))
        keep = score >= threshold
        if not keep.any():
            return []
        reg, anc, score = reg[keep], self.anchors[keep], score[keep]
        cx = (reg[:, 0] / self.SIZE + anc[:, 0]) * self.SIZE   # input pixels
        cy = (reg[:, 1] / self.SIZE + anc[:, 1]) * self.SIZE
        bw, bh = reg[:, 2], reg[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1)
        idx = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), score.tolist(), float(threshold), self.nms), int).ravel()
        faces = []
        for i in idx[np.argsort(-score[idx])]:
            bx, by, bw_, bh_ = boxes[i]
            # input pixels -> image pixels, then RetinaFace's geometry (same centre and bottom edge)
            cxi, bottom, wi = (bx + bw_ / 2 - ox) / sx, (by + bh_ - oy) / sy, bw_ / sx
            W = wi / self.WIDTH_PER_RETINAFACE
            H = W / self.RETINAFACE_ASPECT
            faces.append(Face((float(cxi - W / 2), float(bottom - H), float(W), float(H)), float(score[i]), None,
                              "blazeface"))
        return faces

