"""VR-venue photos of people in real-looking headsets (vrfer.faces.headsets), with their ground truth: test and tuning
data for face detection behind a headset (issue 33).

Hands holding controllers, bystanders without a headset, small faces and patterned backgrounds make a scene
(`scene`); a scene without people (`distractor`) is a headset on a table, a hand with a controller or a patterned
wall. Every drawing is seeded (numpy Generator) and returns its ground truth: for each person the mouth centre (the
point the model must read) in image pixels, whether they wear a headset, the headset type and the pose.
benchmarks/headset_scenes.py builds the set and measures the detector on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .headsets import HEADSET_TYPES, Camera, blend, draw_real_headset, noise, turn

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
    box: tuple | None = None          # the whole face's box (x, y, w, h) as the detector boxes a clean face, turned
    landmarks: np.ndarray | None = None   # its 5 landmarks (eyes, nose, mouth corners), hidden ones included


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
        img += noise(rng, h, w, 8)[..., None] * 60
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
    blend(canvas, layer, cover)
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
        bx, by, bw, bh = src.box
        corners = cam.project([(bx, by), (bx + bw, by), (bx + bw, by + bh), (bx, by + bh)]) * s + off
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        people.append(Person((p["x"], p["y"]), p["fw"], truth["headset"], p["yaw"], p["pitch"], truth["extras"],
                             box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                             landmarks=cam.project(np.asarray(src.landmarks)) * s + off))
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
