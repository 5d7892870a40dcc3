"""Headsets that look real: test and tuning data for face detection behind a headset (issue 33).
vrfer.occlusion.draw_headset is the flat box the classifier was trained against; this module draws what a camera at
a VR venue sees (vrfer.faces.scenes puts them on people in whole photos).

A headset is built in 3D around a frontal face (from its 5 clean landmarks) and seen through a pinhole camera
turned by the head's yaw and pitch: the face photo is a plane (z = 0) warped by the same camera, the headset's
front plate sits in front of it (z < 0, towards the camera) so that a turned head shows the headset's side and
the front slides over the cheek as on a real one. Types (HEADSET_TYPES) differ in shape and surface: a dimpled
front (Vive), fabric (Rift), a white or black plastic front with camera eyes (Quest, Rift S, Windows MR), a
visor with a light strip (PlayStation VR); each gets a random logo, a light reflection, side and top straps,
and may get headphones, a cable and a microphone boom towards the mouth. Every drawing is seeded (numpy Generator).
"""

from __future__ import annotations

import math

import numpy as np

HEADSET_TYPES = ("vive", "rift", "quest", "rift-s", "wmr", "psvr")


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

def noise(rng, h: int, w: int, scale: float) -> np.ndarray:
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
    img += (noise(rng, h, w, grain) * (10 if kind == "rift" else 6))[..., None]
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


def blend(img: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> None:
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
    blend(img, layer, alpha)


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
