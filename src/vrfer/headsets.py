"""Headsets that look real, and VR-venue scenes built from them: test and tuning data for face detection behind
a headset (issue 33). vrfer.occlusion.draw_headset is the flat box the classifier was trained against; this module
draws what a camera at a VR venue sees.

A headset is built in 3D around a frontal face (from its 5 clean landmarks) and seen through a pinhole camera
turned by the head's yaw and pitch: the face photo is a plane (z = 0) warped by the same camera, the headset's
front plate sits in front of it (z < 0, towards the camera) so that a turned head shows the headset's side and
the front slides over the cheek as on a real one. Types (HEADSET_TYPES) differ in shape and surface: a dimpled
front (Vive), fabric (Rift), a white or black plastic front with camera eyes (Quest, Rift S, Windows MR), a
visor with a light strip (PlayStation VR); each gets a random logo, a light reflection, side and top straps,
and may get headphones, a cable and a microphone boom towards the mouth. Hands holding controllers, bystanders
without a headset, small faces and patterned backgrounds make a scene (`scene`); a scene without people
(`distractor`) is a headset on a table, a hand with a controller or a patterned wall.

Every drawing is seeded (numpy Generator) and returns its ground truth: for each person the mouth centre (the
point the model must read) in image pixels, whether they wear a headset, the headset type and the pose.
benchmarks/headset_scenes.py builds the set and measures the detector on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

HEADSET_TYPES = ("vive", "rift", "quest", "rift-s", "wmr", "psvr")
CONTROLLERS = ("wand", "touch", "gun")
BACKGROUNDS = ("flat", "stripes", "checks", "dots", "bricks", "venue", "noise")


@dataclass
class Person:
    """One person in a scene: mouth (x, y), the centre of the mouth corners in scene pixels; face_width in
    scene pixels (the clean photo's detector box width, scaled); headset type or None (a bystander)."""
    mouth: tuple
    face_width: float
    headset: str | None
    yaw: float = 0.0
    pitch: float = 0.0
    extras: list = field(default_factory=list)
    visible: bool = True     # False: their own headset hangs over the mouth (seen from above); nobody can read it


# ------------------------------------------------------------------------------------------- camera

class Camera:
    """A pinhole camera looking at a frontal face photo's plane, turned by the head's yaw and pitch (degrees)
    about the face centre (cx, cy). Coordinates: face-photo pixels, z towards the back of the head."""

    def __init__(self, cx: float, cy: float, face_width: float, yaw: float, pitch: float):
        self.c = np.array([cx, cy, 0.0])
        self.f = 4.0 * face_width       # a camera ~a metre away: moderate perspective
        ya, pi = math.radians(yaw), math.radians(pitch)
        ry = np.array([[math.cos(ya), 0, math.sin(ya)], [0, 1, 0], [-math.sin(ya), 0, math.cos(ya)]])
        rx = np.array([[1, 0, 0], [0, math.cos(pi), -math.sin(pi)], [0, math.sin(pi), math.cos(pi)]])
        self.r = rx @ ry
        self.yaw, self.pitch = float(yaw), float(pitch)

    def project(self, pts) -> np.ndarray:
        """(N, 3) or (N, 2) points (z = 0 when missing) -> (N, 2) image points (same pixel frame)."""
        p = np.asarray(pts, np.float64)
        if p.shape[1] == 2:
            p = np.hstack([p, np.zeros((len(p), 1))])
        q = (p - self.c) @ self.r.T
        s = self.f / (self.f + q[:, 2])
        return np.stack([self.c[0] + q[:, 0] * s, self.c[1] + q[:, 1] * s], 1)

    def plane_homography(self, corners) -> np.ndarray:
        """3x3 homography taking the z = 0 plane's image points to their projections (4 reference corners)."""
        import cv2
        src = np.asarray(corners, np.float32)
        return cv2.getPerspectiveTransform(src, self.project(src).astype(np.float32))


# ------------------------------------------------------------------------------------------ surfaces

def _noise(rng, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth noise in [-1, 1] (h, w): random values on a coarse grid, scaled up."""
    import cv2
    gh, gw = max(2, int(h / scale)), max(2, int(w / scale))
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _front_texture(rng, kind: str, w: int, h: int, base) -> np.ndarray:
    """The front plate's face (h, w, 3) BGR float: the type's surface, a logo, a light reflection."""
    import cv2
    base = np.asarray(base, np.float32)
    img = np.ones((h, w, 3), np.float32) * base
    grain = 6 if kind in ("rift", "psvr") else 14
    img += (_noise(rng, h, w, grain) * (10 if kind == "rift" else 6))[..., None]
    img += (np.linspace(12, -18, h, dtype=np.float32))[:, None, None]      # light from above
    if kind == "vive":         # the sensor dimples: a grid of pits with a dark centre and a lit rim
        r = max(2, int(0.035 * w))
        for yy in np.arange(r * 2, h - r, 3.2 * r):
            for xx in np.arange(r * 2 + (yy // (3.2 * r)) % 2 * 1.6 * r, w - r, 3.2 * r):
                cv2.circle(img, (int(xx), int(yy)), r, (base * 0.45).tolist(), -1, cv2.LINE_AA)
                cv2.circle(img, (int(xx), int(yy) - 1), r, (base * 1.6 + 25).tolist(), 1, cv2.LINE_AA)
    if kind in ("quest", "rift-s", "wmr"):   # tracking cameras on the front's corners
        r = max(2, int(0.05 * w))
        spots = [(0.12, 0.2), (0.88, 0.2), (0.12, 0.8), (0.88, 0.8)] if kind == "quest" else [(0.2, 0.45), (0.8, 0.45)]
        for fx, fy in spots:
            cv2.circle(img, (int(fx * w), int(fy * h)), r, (15, 15, 18), -1, cv2.LINE_AA)
            cv2.circle(img, (int(fx * w), int(fy * h)), r, (90, 90, 95), 1, cv2.LINE_AA)
    if kind == "psvr":          # the blue light strip along the visor's edge
        cv2.rectangle(img, (int(0.06 * w), int(0.08 * h)), (int(0.94 * w), int(0.92 * h)),
                      (255, 190, 60), max(1, int(0.03 * h)), cv2.LINE_AA)
    if rng.random() < 0.8:       # a logo: a light mark near the middle
        col = (base * 0.5 + 110).tolist() if base.mean() < 128 else (base * 0.4).tolist()
        cx, cy, s = int(w * rng.uniform(0.4, 0.6)), int(h * rng.uniform(0.3, 0.7)), max(2, int(0.06 * w))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), s, col, max(1, s // 3), cv2.LINE_AA)
        else:
            mark = np.zeros((h, w), np.uint8)    # putText draws on 8-bit images only
            cv2.putText(mark, str(rng.choice(["VR", "HTC", "OCULUS", "MR"])), (cx - 2 * s, cy + s // 2),
                        cv2.FONT_HERSHEY_SIMPLEX, max(0.2, s / 14), 255, max(1, s // 5), cv2.LINE_AA)
            a = (mark.astype(np.float32) / 255)[..., None]
            img = img * (1 - a) + np.asarray(col, np.float32) * a
    # a light reflection: a soft bright ellipse somewhere on the upper half
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ex, ey = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.5) * h
    glare = np.exp(-(((xx - ex) / (0.25 * w)) ** 2 + ((yy - ey) / (0.12 * h)) ** 2))
    img += (glare * rng.uniform(20, 90 if kind in ("wmr", "quest", "rift-s") else 45))[..., None]
    return img.clip(0, 255)


# Per type: front colour(s) (BGR), width per face width, top and bottom of the front (share of the eye-to-mouth
# distance above / below the eye line), depth (how far it stands out, per face width), corner roundness.
_SHAPES = {
    "vive":   dict(colours=[(32, 32, 36), (40, 40, 44)], width=(1.30, 1.50), top=(0.85, 1.05), bottom=(0.35, 0.6),
                   depth=(0.55, 0.7), round=0.3),
    "rift":   dict(colours=[(25, 25, 28), (38, 36, 34)], width=(1.20, 1.35), top=(0.7, 0.9), bottom=(0.3, 0.5),
                   depth=(0.4, 0.5), round=0.35),
    "quest":  dict(colours=[(225, 225, 222), (40, 40, 44), (200, 200, 205)], width=(1.25, 1.40), top=(0.75, 0.95),
                   bottom=(0.35, 0.55), depth=(0.45, 0.6), round=0.35),
    "rift-s": dict(colours=[(30, 30, 32)], width=(1.25, 1.40), top=(0.75, 0.95), bottom=(0.35, 0.55),
                   depth=(0.5, 0.6), round=0.25),
    "wmr":    dict(colours=[(20, 20, 22), (60, 58, 55)], width=(1.20, 1.40), top=(0.7, 0.95), bottom=(0.3, 0.5),
                   depth=(0.45, 0.55), round=0.3),
    "psvr":   dict(colours=[(235, 235, 235), (30, 30, 30)], width=(1.25, 1.45), top=(0.7, 0.9), bottom=(0.3, 0.5),
                   depth=(0.5, 0.65), round=0.45),
}


def _rounded_outline(x0, y0, x1, y1, r, n: int = 6) -> np.ndarray:
    """(K, 2) points around a rounded rectangle, clockwise from the top left."""
    pts = []
    for cx, cy, a0 in ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180)):
        for a in np.linspace(a0, a0 + 90, n):
            pts.append((cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))))
    return np.array(pts)


def _strap(img, cam, pts3, colour, width) -> None:
    """A strap, cable or boom: a thick polyline through 3D points."""
    import cv2
    p = cam.project(np.asarray(pts3, np.float64)).round().astype(np.int32)
    cv2.polylines(img, [p], False, tuple(float(c) for c in colour), max(1, int(round(width))), cv2.LINE_AA)


def _blend(img: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> None:
    """img <- layer over img with alpha (H, W) in [0, 1], in place."""
    a = alpha[..., None]
    img[:] = (layer * a + img.astype(np.float32) * (1 - a)).round().clip(0, 255).astype(np.uint8)


def _draw_front(img, cam, rng, kind, outline_front, box_front, colour) -> None:
    """The front plate: its textured face warped onto the plate's projected corners."""
    import cv2
    x0, y0, x1, y1, z = box_front
    tw, th = 160, max(40, int(160 * (y1 - y0) / (x1 - x0)))
    tex = _front_texture(rng, kind, tw, th, colour)
    r = _SHAPES[kind]["round"] * min(tw, th) / 2
    mask = np.zeros((th, tw), np.float32)
    cv2.fillPoly(mask, [_rounded_outline(0, 0, tw - 1, th - 1, r).round().astype(np.int32)], 1.0, cv2.LINE_AA)
    src = np.float32([[0, 0], [tw, 0], [tw, th], [0, th]])
    dst = cam.project([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]).astype(np.float32)
    hmat = cv2.getPerspectiveTransform(src, dst)
    size = (img.shape[1], img.shape[0])
    layer = cv2.warpPerspective(tex, hmat, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(mask, hmat, size, flags=cv2.INTER_LINEAR)
    _blend(img, layer, alpha)


def _shell(img, cam, outline_rear, outline_front, colour) -> None:
    """The headset's body seen from the camera: the hull of its rear (against the face) and front outlines,
    shaded darker than the front; a turned head shows it as the headset's side."""
    import cv2
    pts = np.vstack([cam.project(outline_rear), cam.project(outline_front)]).astype(np.float32)
    hull = cv2.convexHull(pts).round().astype(np.int32)
    cv2.fillPoly(img, [hull], tuple(float(c) * 0.55 + 8 for c in colour), cv2.LINE_AA)


def turn(image: np.ndarray, landmarks, face_width: float, yaw: float, pitch: float) -> tuple[np.ndarray, Camera]:
    """A frontal face photo seen with the head turned by yaw and pitch (degrees): the warped photo (same size,
    border replicated) and the camera that did it (Camera.project maps the frontal photo's points)."""
    import cv2
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye, mouth = pts[:2].mean(0), pts[3:].mean(0)
    cam = Camera(eye[0], (eye[1] + mouth[1]) / 2, face_width, yaw, pitch)
    h, w = image.shape[:2]
    hmat = cam.plane_homography([(0, 0), (w, 0), (w, h), (0, h)])
    return cv2.warpPerspective(image, hmat, (w, h), borderMode=cv2.BORDER_REPLICATE), cam


def headset_photo(image: np.ndarray, landmarks, face_width: float, rng: np.random.Generator,
                  kind: str | None = None, yaw: float = 0.0, pitch: float = 0.0,
                  extras: tuple = ("straps", "headphones", "cable", "boom")) -> tuple[np.ndarray, dict]:
    """A frontal face photo turned by yaw and pitch with a real-looking headset on: (image, truth) as
    draw_real_headset gives them."""
    out, cam = turn(image, landmarks, face_width, yaw, pitch)
    return draw_real_headset(out, landmarks, face_width, rng, cam, kind, extras)


def draw_real_headset(image: np.ndarray, landmarks, face_width: float, rng: np.random.Generator, camera: Camera,
                      kind: str | None = None,
                      extras: tuple = ("straps", "headphones", "cable", "boom")) -> tuple[np.ndarray, dict]:
    """A copy of `image` with a headset of `kind` (random when None) on the face whose frontal 5 landmarks
    (eyes, nose, mouth corners; the face before `camera` turned it, in this image's pixels) are given, seen
    through `camera` (the turned head's, from `turn`). extras: the parts that may be drawn (each with its own
    chance). Returns the image and the truth: {"mouth": (x, y), "face_width", "headset", "yaw", "pitch",
    "extras"}."""
    import cv2
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    kind = kind or str(rng.choice(HEADSET_TYPES))
    shape = _SHAPES[kind]
    eye, mouth = pts[:2].mean(0), pts[3:].mean(0)
    d = max(4.0, float(mouth[1] - eye[1]))
    cam = camera
    out = np.array(image, copy=True)
    yaw, pitch = cam.yaw, cam.pitch
    colour = shape["colours"][rng.integers(len(shape["colours"]))]
    hw = rng.uniform(*shape["width"]) * face_width / 2
    top, bottom = eye[1] - rng.uniform(*shape["top"]) * d, eye[1] + rng.uniform(*shape["bottom"]) * d
    depth = rng.uniform(*shape["depth"]) * face_width
    cx = eye[0] + rng.uniform(-0.03, 0.03) * face_width
    r = shape["round"] * (bottom - top) / 2
    rear = _rounded_outline(cx - hw, top, cx + hw, bottom, r)
    taper = 0.9
    fx0, fx1 = cx - hw * taper, cx + hw * taper
    fy0, fy1 = top + (1 - taper) * (bottom - top) / 2, bottom - (1 - taper) * (bottom - top) / 2
    front = _rounded_outline(fx0, fy0, fx1, fy1, r * taper)
    rear3 = np.hstack([rear, np.full((len(rear), 1), 0.02 * face_width)])
    front3 = np.hstack([front, np.full((len(front), 1), -depth)])
    drawn = []
    strap_col = [float(c) * 0.5 for c in colour] if np.mean(colour) > 128 else (20, 20, 22)
    ear_y = eye[1] + 0.45 * d
    if "straps" in extras:
        for s in (-1, 1):   # side straps from the body to behind the ears
            _strap(out, cam, [(cx + s * hw, (top + bottom) / 2, -0.3 * depth),
                              (eye[0] + s * 0.62 * face_width, eye[1], 0.45 * face_width)],
                   strap_col, 0.09 * face_width)
        drawn.append("straps")
    _shell(out, cam, rear3, front3, colour)
    _draw_front(out, cam, rng, kind, front, (fx0, fy0, fx1, fy1, -depth), colour)
    if "straps" in extras and rng.random() < 0.7:   # a top strap over the head
        _strap(out, cam, [(cx, top, -0.4 * depth), (cx, top - 0.35 * face_width, 0.0),
                          (cx, top - 0.6 * face_width, 0.5 * face_width)], strap_col, 0.08 * face_width)
    if "headphones" in extras and rng.random() < 0.5:
        for s in (-1, 1):
            c = cam.project([(eye[0] + s * 0.6 * face_width, ear_y, 0.25 * face_width)])[0]
            ax = (max(2, int(0.08 * face_width * abs(math.cos(math.radians(yaw))) + 0.04 * face_width)),
                  max(3, int(0.15 * face_width)))
            cv2.ellipse(out, (int(c[0]), int(c[1])), ax, 0, 0, 360, (25, 25, 28), -1, cv2.LINE_AA)
            cv2.ellipse(out, (int(c[0]), int(c[1])), ax, 0, 200, 340, (70, 70, 75), 2, cv2.LINE_AA)
        drawn.append("headphones")
        if "boom" in extras and rng.random() < 0.5:   # a microphone boom ending beside the mouth
            s = 1 if rng.random() < 0.5 else -1
            end = (mouth[0] + s * rng.uniform(0.3, 0.45) * face_width, mouth[1] + rng.uniform(-0.1, 0.1) * d,
                   -0.15 * face_width)
            _strap(out, cam, [(eye[0] + s * 0.56 * face_width, ear_y, 0.2 * face_width),
                              (eye[0] + s * 0.5 * face_width, mouth[1], 0.0), end], (30, 30, 32), 0.03 * face_width)
            e = cam.project([end])[0]
            cv2.circle(out, (int(e[0]), int(e[1])), max(2, int(0.06 * face_width)), (35, 35, 38), -1, cv2.LINE_AA)
            drawn.append("boom")
    if "cable" in extras and rng.random() < 0.5:   # a tethered headset's cable down the side
        s = 1 if rng.random() < 0.5 else -1
        pts3 = [(cx + s * hw * 0.9, top, 0.1 * face_width)]
        for k in range(1, 5):
            pts3.append((eye[0] + s * (0.6 + 0.05 * k) * face_width + rng.uniform(-0.05, 0.05) * face_width,
                         top + k * 0.6 * face_width, 0.3 * face_width))
        _strap(out, cam, pts3, (18, 18, 20), 0.03 * face_width)
        drawn.append("cable")
    m = cam.project([mouth])[0]
    return out, {"mouth": (float(m[0]), float(m[1])), "face_width": float(face_width), "headset": kind,
                 "yaw": float(yaw), "pitch": float(pitch), "extras": drawn}


# ------------------------------------------------------------------------------------ hands, backgrounds

SKIN = ((80, 110, 160), (110, 150, 200), (140, 175, 225), (60, 80, 120), (100, 140, 190))


def draw_hand(img: np.ndarray, x: float, y: float, size: float, rng: np.random.Generator,
              controller: str | None = None, skin=None) -> str:
    """A hand holding a VR controller at (x, y), `size` pixels across, turned at random, drawn in place.
    Returns the controller's kind ("wand": a Vive wand's rod and ring, "touch": a Touch controller's ring and
    grip, "gun": a gun stock)."""
    import cv2
    controller = controller or str(rng.choice(CONTROLLERS))
    skin = tuple(float(c) for c in (skin if skin is not None else SKIN[rng.integers(len(SKIN))]))
    a = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def P(pts):
        return (np.asarray(pts, np.float64) * size) @ rot.T + (x, y)

    dark = (22, 22, 25)
    t = max(1, int(0.12 * size))
    if controller == "wand":
        cv2.polylines(img, [P([(0, -0.2), (0, 0.9)]).round().astype(np.int32)], False, dark, t, cv2.LINE_AA)
        c = P([(0, -0.55)])[0]
        cv2.circle(img, (int(c[0]), int(c[1])), int(0.35 * size), dark, max(1, int(0.14 * size)), cv2.LINE_AA)
    elif controller == "touch":
        c = P([(0.25, -0.35)])[0]
        cv2.circle(img, (int(c[0]), int(c[1])), int(0.3 * size), dark, max(1, int(0.08 * size)), cv2.LINE_AA)
        cv2.fillPoly(img, [P([(-0.1, -0.2), (0.15, -0.2), (0.1, 0.5), (-0.1, 0.5)]).round().astype(np.int32)], dark)
    else:
        cv2.fillPoly(img, [P([(-0.15, -0.9), (0.1, -0.9), (0.1, 0.2), (0.5, 0.6), (0.3, 0.8), (-0.15, 0.3)])
                           .round().astype(np.int32)], (30, 32, 40))
    palm = P([(0, 0)])[0]
    cv2.ellipse(img, (int(palm[0]), int(palm[1])), (max(2, int(0.28 * size)), max(2, int(0.36 * size))),
                math.degrees(a), 0, 360, skin, -1, cv2.LINE_AA)
    for k in range(4):   # fingers wrapped round the grip
        yk = -0.2 + 0.13 * k
        cv2.polylines(img, [P([(-0.22, yk), (0.18, yk - 0.03)]).round().astype(np.int32)], False,
                      tuple(c * 0.92 for c in skin), max(1, int(0.1 * size)), cv2.LINE_AA)
    cv2.polylines(img, [P([(-0.2, 0.2), (-0.05, -0.35)]).round().astype(np.int32)], False, skin,
                  max(1, int(0.1 * size)), cv2.LINE_AA)
    return controller


def background(rng: np.random.Generator, w: int, h: int, kind: str | None = None) -> np.ndarray:
    """A (h, w, 3) BGR wall of a VR venue: flat, stripes, checks, dots, bricks, venue (panels, a pipe, an egg
    chair) or noise, with a light gradient."""
    import cv2
    kind = kind or str(rng.choice(BACKGROUNDS))
    c1, c2 = rng.integers(30, 230, 3), rng.integers(30, 230, 3)
    img = np.ones((h, w, 3), np.float32) * c1
    yy, xx = np.mgrid[0:h, 0:w]
    p = int(rng.integers(12, 60))
    if kind == "stripes":
        img[((xx + (yy if rng.random() < 0.5 else 0)) // p) % 2 == 1] = c2
    elif kind == "checks":
        img[((xx // p) + (yy // p)) % 2 == 1] = c2
    elif kind == "dots":
        for cy in range(p // 2, h, p):
            for cx in range(p // 2, w, p):
                cv2.circle(img, (cx, cy), max(2, p // 4), c2.tolist(), -1, cv2.LINE_AA)
    elif kind == "bricks":
        img[(yy % p < 3) | (((xx + (yy // p) % 2 * p) % (2 * p)) < 3)] = c2
    elif kind == "venue":
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))),
                          rng.integers(20, 240, 3).tolist(), -1)
        y0 = int(rng.integers(0, h))
        cv2.line(img, (0, y0), (w, y0 + int(rng.integers(-50, 50))), rng.integers(80, 200, 3).tolist(),
                 int(rng.integers(6, 20)), cv2.LINE_AA)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
        cv2.ellipse(img, (cx, cy), (int(rng.integers(40, 120)), int(rng.integers(60, 160))), 0, 0, 360,
                    rng.integers(150, 250, 3).tolist(), -1, cv2.LINE_AA)
    elif kind == "noise":
        img += _noise(rng, h, w, 8)[..., None] * 60
    img *= np.linspace(rng.uniform(0.6, 1.1), rng.uniform(0.6, 1.1), w, dtype=np.float32)[None, :, None]
    return img.clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- scenes

@dataclass
class Source:
    """A clean frontal face photo to build people from: BGR image, its face's 5 landmarks and detector box."""
    image: np.ndarray
    landmarks: np.ndarray
    box: tuple


def _head(src: Source, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, Camera]:
    """The source photo turned, the soft mask of its head (an ellipse round the face box), and the camera."""
    import cv2
    img, cam = turn(src.image, src.landmarks, float(src.box[2]), yaw, pitch)
    x, y, bw, bh = src.box
    h, w = src.image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(x + bw / 2), int(y + 0.45 * bh)), (int(0.52 * bw), int(0.58 * bh)), 0, 0, 360, 1.0, -1)
    mask = cv2.warpPerspective(mask, cam.plane_homography([(0, 0), (w, 0), (w, h), (0, h)]), (w, h))
    return img, cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.04 * bw)), cam


def _body(canvas, rng, mouth, fw: float, skin) -> None:
    """A neck and a shirt (plain or patterned) below a face whose mouth is at `mouth` (canvas pixels)."""
    import cv2
    mx, my = mouth
    cv2.rectangle(canvas, (int(mx - 0.22 * fw), int(my)), (int(mx + 0.22 * fw), int(my + 0.75 * fw)),
                  tuple(float(c) for c in skin), -1)
    shirt = np.int32([(mx - 0.5 * fw, my + 0.6 * fw), (mx + 0.5 * fw, my + 0.6 * fw),
                      (mx + 1.4 * fw, my + 1.3 * fw), (mx + 1.5 * fw, canvas.shape[0]),
                      (mx - 1.5 * fw, canvas.shape[0]), (mx - 1.4 * fw, my + 1.3 * fw)])
    mask = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillPoly(mask, [shirt], 1)
    cloth = background(rng, canvas.shape[1], canvas.shape[0],
                       str(rng.choice(["flat", "flat", "stripes", "checks", "dots", "noise"])))
    canvas[mask > 0] = cloth[mask > 0]


def _paste(canvas: np.ndarray, img: np.ndarray, mask: np.ndarray, scale: float, at: tuple) -> np.ndarray:
    """Paste img (scaled) with its mask so that its pixel (0, 0) lands at `at` (canvas pixels); returns the
    pasted mask in canvas pixels (what now covers what was below)."""
    import cv2
    h, w = img.shape[:2]
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img, mask = cv2.resize(img, (nw, nh), interpolation=interp), cv2.resize(mask, (nw, nh), interpolation=interp)
    H, W = canvas.shape[:2]
    x0, y0 = int(round(at[0])), int(round(at[1]))
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + nw), min(H, y0 + nh)
    cover = np.zeros((H, W), np.float32)
    if cx0 >= cx1 or cy0 >= cy1:
        return cover
    cover[cy0:cy1, cx0:cx1] = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    layer = np.zeros_like(canvas, dtype=np.float32)
    layer[cy0:cy1, cx0:cx1] = img[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    _blend(canvas, layer, cover)
    return cover


def _place_people(rng, n: int, w: int, h: int) -> list[dict]:
    """Who stands where: the first person is the wearer (largest face); others, smaller, beside them."""
    people = []
    slots = rng.permutation(n)
    for i in range(n):
        big = i == 0
        fw = float(np.exp(rng.uniform(np.log(50), np.log(min(260, 0.45 * h))))) if big else \
            float(np.exp(rng.uniform(np.log(40), np.log(150))))
        x = (slots[i] + 0.5) * w / n + rng.uniform(-0.1, 0.1) * w / n
        y = rng.uniform(0.25, 0.55) * h
        kind = str(rng.choice(HEADSET_TYPES)) if big or rng.random() < 0.5 else None
        people.append({"fw": fw, "x": x, "y": y, "headset": kind,
                       "yaw": float(rng.uniform(-40, 40)), "pitch": float(rng.uniform(-35, 35))})
    return people


def scene(sources: list[Source], rng: np.random.Generator, size: tuple = (800, 600)) -> tuple[np.ndarray, list[Person]]:
    """A VR-venue photo: 1-3 people from `sources` (the first and largest wears a headset; each other one
    does by chance), turned up to +-40 degrees yaw and +-35 pitch, faces 40-260 px wide, hands with
    controllers near the wearers, on a patterned wall. Returns the BGR image and its people (a person whose
    mouth another person covers is left out; one whose own headset hides the mouth is marked not visible)."""
    w, h = size
    canvas = background(rng, w, h)
    n = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
    plan = sorted(_place_people(rng, n, w, h), key=lambda p: p["fw"])   # far (small) ones first
    people: list[Person] = []
    for p in plan:
        src = sources[int(rng.integers(len(sources)))]
        img, mask, cam = _head(src, p["yaw"], p["pitch"])
        s = p["fw"] / float(src.box[2])
        m = cam.project([np.asarray(src.landmarks)[3:].mean(0)])[0]
        off = np.array([p["x"] - m[0] * s, p["y"] - m[1] * s])
        skin = np.median(src.image[int(src.box[1] + 0.6 * src.box[3]):int(src.box[1] + 0.7 * src.box[3]),
                                   int(src.box[0] + 0.2 * src.box[2]):int(src.box[0] + 0.35 * src.box[2])]
                         .reshape(-1, 3), 0)
        _body(canvas, rng, (p["x"], p["y"]), p["fw"], skin)
        cover = _paste(canvas, img, mask, s, tuple(off))
        people = [q for q in people if not _covered(cover, q.mouth)]
        truth = {"headset": None, "extras": []}
        if p["headset"]:
            scam = Camera(cam.c[0] * s + off[0], cam.c[1] * s + off[1], p["fw"], p["yaw"], p["pitch"])
            before = canvas.copy()
            canvas[:], truth = draw_real_headset(canvas, np.asarray(src.landmarks) * s + off, p["fw"], rng, scam,
                                                 p["headset"])
        people.append(Person((p["x"], p["y"]), p["fw"], truth["headset"], p["yaw"], p["pitch"], truth["extras"]))
        if p["headset"] and _drawn_over(before, canvas, (p["x"], p["y"]), p["fw"]):
            people[-1].visible = False   # seen from above, the headset's front hangs over the mouth
    _hands(canvas, people, rng)
    return canvas, people


def _hands(canvas, people: list[Person], rng) -> None:
    """Hands with controllers beside the wearers' faces, never over a mouth."""
    for q in list(people):
        if q.headset and rng.random() < 0.6:
            for side in rng.permutation([-1, 1])[: int(rng.integers(1, 3))]:
                size_ = rng.uniform(0.6, 0.9) * q.face_width
                hx = q.mouth[0] + side * rng.uniform(0.9, 1.4) * q.face_width
                hy = q.mouth[1] + rng.uniform(-0.8, 1.2) * q.face_width
                if all(math.hypot(hx - o.mouth[0], hy - o.mouth[1]) > 0.6 * size_ + 0.3 * o.face_width for o in people):
                    q.extras.append("hand-" + draw_hand(canvas, hx, hy, size_, rng))


def _drawn_over(before: np.ndarray, after: np.ndarray, point, face_width: float) -> bool:
    """Whether a drawing hid the mouth at `point`: over half of the square of side 16% of the face width round
    it changed (a headset's edge over the upper lip leaves the mouth readable)."""
    r = max(1, int(round(0.08 * face_width)))
    x, y = int(round(point[0])), int(round(point[1]))
    win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
    a, b = before[win], after[win]
    return a.size > 0 and float((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > 20).mean()) > 0.5


def _covered(cover: np.ndarray, point) -> bool:
    x, y = int(round(point[0])), int(round(point[1]))
    return 0 <= y < cover.shape[0] and 0 <= x < cover.shape[1] and cover[y, x] > 0.5


DISTRACTORS = ("headset", "hands", "wall", "headset+hands")


def distractor(rng: np.random.Generator, size: tuple = (800, 600), kind: str | None = None) -> tuple[np.ndarray, str]:
    """A photo with no visible mouth in it: a headset alone (held up, or on a table), hands with controllers,
    a patterned wall, or a headset with hands. Returns the BGR image and which it is."""
    w, h = size
    kind = kind or str(rng.choice(DISTRACTORS))
    canvas = background(rng, w, h)
    if "headset" in kind:
        fw = float(rng.uniform(80, 260))
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.6) * h
        d = 0.45 * fw   # landmarks of a face that is not there: the headset alone, seen as a wearer's would be
        pts = np.array([(cx - 0.2 * fw, cy - d / 2), (cx + 0.2 * fw, cy - d / 2), (cx, cy),
                        (cx - 0.15 * fw, cy + d / 2), (cx + 0.15 * fw, cy + d / 2)])
        cam = Camera(cx, cy, fw, float(rng.uniform(-40, 40)), float(rng.uniform(-35, 35)))
        canvas, _ = draw_real_headset(canvas, pts, fw, rng, cam, extras=("straps", "cable"))
    if "hands" in kind:
        for _ in range(int(rng.integers(1, 3))):
            draw_hand(canvas, rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(60, 200), rng)
    return canvas, kind
