"""Where a detected face sits and how it is cut out: the Face a detector reports, the wearer-first order of every
answer, box overlap (iou), and the FER+-style square crop (CropGeometry and its numbers).

Alignment (what the classifier was trained on): FER+ crops are 48x48, from the forehead to just
under the chin, the face filling the frame. Measured with the RetinaFace detector (vrfer.faces.retinaface) on 598 FER+ test faces
(upscaled and padded so that the detector sees the whole face), a FER+ crop is a square centred on
the detector's box, with side 0.98 x the box height = 1.29 x its width and its bottom edge on the
box bottom. `square_box` builds the square from the box width and bottom, which a headset barely
moves; `align_crop` cuts it out (replicating the border where it leaves the image) and scales it to
48x48 the way FER2013 was made. The model's input mode takes the lower half itself: hand it the
full square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import VrferError
from .colour import to_gray

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



# the detector whose boxes the numbers above were measured on (vrfer.faces.retinaface; the ONNX metadata names it)
DETECTOR_NAME = "retinaface-mnet0.25"

Box = tuple  # (x, y, w, h) in pixels, floats or ints


@dataclass
class Face:
    """One detected face: box (x, y, w, h) in image pixels, detector score, 5 landmarks
    (left eye, right eye, nose, left and right mouth corner; (5, 2) x/y) when the detector gives them,
    and which detector found it (its registered name, vrfer.faces.registry: "retinaface", "blazeface"; their
    scores are not on one scale). held: the
    face tracker (vrfer.faces.tracking) did not see the face in this frame and kept its last box (score 0).
    square: the whole-pixel square (x, y, side) the face was cut from (vrfer.inference.pipeline.crop_faces sets it when it
    cuts the face; None before), which every answer reports beside the box. alternate: another detector's face at
    the same place, which the pipeline's mouth check reads instead when it refuses this one
    (RetinaFaceDetector's second look)."""

    box: tuple
    score: float = 1.0
    landmarks: np.ndarray | None = field(default=None, repr=False)
    detector: str = field(default="retinaface", repr=False, compare=False)
    held: bool = False
    square: tuple | None = field(default=None, repr=False, compare=False)
    alternate: "Face | None" = field(default=None, repr=False, compare=False)

    def int_box(self) -> tuple[int, int, int, int]:
        return tuple(int(round(v)) for v in self.box)


def centre_inside(a: Box, b: Box) -> bool:
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

