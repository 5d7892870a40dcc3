"""Following one face through video frames, steadily: the face tracker used by `vrfer predict` (videos,
webcams), `vrfer serve` (/ws, --camera, --video) and `Recognizer.predict(..., track=True)`.

    from vrfer.faces.tracking import FaceTracker
    tracker = FaceTracker(detector)          # any vrfer.faces.FaceDetector (vrfer.faces.registry)
    faces = tracker.update(frame)            # [Face] (the main face) or [] ; tracker.reset() for a new stream

What a VR scene needs from it: a face that does not move gives the same box in every frame (so the
same crop, so the same probabilities), a face that moves is followed, and a face that is lost (turned
away, hand in front) is found again. How:

- Re-detection region: each frame looks for the face only in a square around the box it reports, and
  that square is snapped to an 8-pixel grid. Identical frames and an unchanged box give the identical
  region, so the identical detection: nothing in the loop depends on anything but the pixels.
- Smoothing: the detections (centre and log size, in units of the face width) go through a One Euro
  filter (Casiez et al., CHI 2012): a low-pass filter whose cut-off rises with the speed, so detector
  jitter on a still face is averaged away while a moving face is followed with little lag.
- Hysteresis: the reported box changes only when the filtered box has moved more than `deadband`
  (a share of the face width) or changed size by more than `size_deadband`; below that the previous box
  is kept exactly. A still face settles on one box within a few frames and stays there.
- Keypoints (the keypoint crop, vrfer.faces.keypoint_square, is placed from the nose): the landmarks are kept
  relative to the box (offset from its centre, in box widths), smoothed by a filter of their own and changed
  only past the same dead band, so they move with the reported box and a still face keeps one crop.
- Lost faces: a frame where the region pass misses gets a second look at the scale where RetinaFace
  finds faces behind a headset best; when that misses too, the last box is held for `max_missed` frames,
  then the whole frame is searched (the detector's detect) every frame until the face is back.
- Any detector: the region pass is the detector's own in_region where it has one (RetinaFace), else its detect on
  the cut-out region (vrfer.faces.registry.find_in_region), so every registered detector can be tracked.

benchmarks/bench_realtime.py measures it on synthetic videos (a face behind a synthetic headset on a
known path, with still phases and an occlusion): box error, label flips while still, frames to re-find.
"""

from __future__ import annotations

import math

import numpy as np

from .colour import to_bgr
from .geometry import Face, iou, wearer_first
from .registry import find_in_region

GRID = 8                 # pixels: the re-detection square's corner and side snap to this grid


class OneEuroFilter:
    """One Euro filter (Casiez, Roussel, Vogel, CHI 2012) on a vector.

    x_hat_t = a x_t + (1 - a) x_hat_{t-1}, a = 1 / (1 + tau / dt), tau = 1 / (2 pi f_c),
    f_c = min_cutoff + beta |dx/dt| (dx/dt itself low-passed at d_cutoff). Still input: heavy smoothing
    (f_c = min_cutoff Hz); fast input: little lag. The speed is the largest of the vector's components.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self, x=None, t: float | None = None) -> None:
        self.x = None if x is None else np.asarray(x, np.float64).copy()
        self.dx = None if x is None else np.zeros_like(self.x)
        self.t = t

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.reset(x, t)
            return self.x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        ad = self._alpha(self.d_cutoff, dt)
        self.dx = ad * dx + (1 - ad) * self.dx
        cutoff = self.min_cutoff + self.beta * float(np.max(np.abs(self.dx)))
        a = self._alpha(cutoff, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.copy()


def region(box, context: float, grid: int = GRID) -> tuple[float, float, float]:
    """The re-detection square (x, y, side) around a box: side `context` x its longer side, both the side
    and the corner snapped to `grid` pixels (deterministic, and unchanged by sub-grid box changes)."""
    x, y, w, h = box
    side = grid * math.ceil(context * max(w, h) / grid)
    cx, cy = x + w / 2, y + h / 2
    return grid * round((cx - side / 2) / grid), grid * round((cy - side / 2) / grid), float(side)


class FaceTracker:
    """Follows the main face of a stream of frames (see the module docstring).

    detector: a vrfer.faces.FaceDetector (vrfer.faces.registry). fps: the frame rate the filter assumes (frames are
    numbered, so the result does not depend on wall-clock time). track_face_px: face size (pixels) in the
    region pass; context: region side per face side; track_threshold: score a face needs in the region
    (low: it is where the face just was). deadband / size_deadband: the hysteresis. max_missed: frames
    the last box is held when the face is not seen. verify: (frame, faces) -> the faces worth acquiring (the
    pipeline's mouth check), None: all.
    """

    def __init__(self, detector, fps: float = 30.0, track_face_px: int = 160, context: float = 1.5,
                 track_threshold: float = 0.05, deadband: float = 0.04, size_deadband: float = 0.06,
                 max_missed: int = 5, min_cutoff: float = 3.0, beta: float = 2.0, second_look_px: int | None = 320,
                 verify=None):
        self.detector = detector
        self.verify = verify     # (frame, faces) -> the faces worth following (vrfer.inference.pipeline: the mouth check)
        self.fps = float(fps)
        self.track_face_px = int(track_face_px)
        self.context = float(context)
        self.track_threshold = float(track_threshold)
        self.deadband = float(deadband)
        self.size_deadband = float(size_deadband)
        self.max_missed = int(max_missed)
        self.second_look_px = second_look_px
        self.filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
        self.kp_filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
        self.confirmed = 0   # frames where the region pass found the face (for diagnostics)
        self.held = 0        # frames where the last box was kept without seeing the face
        self.searched = 0    # full detections
        self.reset()

    # -- state ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the face: the next frame is searched whole."""
        self.box: tuple | None = None      # the reported box (x, y, w, h), floats
        self.face: Face | None = None      # the last face seen (score, landmarks)
        self.missed = 0
        self.frame = 0
        self._scale = 1.0
        self._corr: dict[int, tuple] = {}  # per region-pass face size: how its boxes map onto the tracked box
        self._acquired_by = ""             # the detector of the full search that started the track
        self._shape: tuple | None = None   # (height, width) of the frames the track was made in
        self._kp: np.ndarray | None = None  # the reported landmarks relative to the box (see _follow_keypoints)
        self._kp_corr: dict[int, np.ndarray] = {}  # per region-pass face size: its landmarks' offset (as _corr)
        self.filter.reset()
        self.kp_filter.reset()

    def _state(self, box) -> np.ndarray:
        x, y, w, h = box
        s = self._scale
        return np.array([(x + w / 2) / s, (y + h / 2) / s, math.log(max(w, 1e-3)), math.log(max(h, 1e-3))])

    def _box(self, z) -> tuple:
        cx, cy, lw, lh = z
        w, h = math.exp(lw), math.exp(lh)
        return (cx * self._scale - w / 2, cy * self._scale - h / 2, w, h)

    def _acquire(self, face: Face) -> None:
        self.face, self.box, self.missed = face, tuple(float(v) for v in face.box), 0
        self._acquired_by = face.detector
        self._corr = {}
        self._scale = max(1.0, float(face.box[2]))
        self.filter.reset(self._state(self.box), self.frame / self.fps)
        self._kp = None
        self._kp_corr = {}
        self._follow_keypoints(face.landmarks, self.box)

    # -- one frame ---------------------------------------------------------------------------------
    def _look(self, bgr: np.ndarray, face_px: int, threshold: float) -> Face | None:
        """The face in the region around the tracked box at this pass size, or None. Its box is compared
        with the tracked one after mapping through this pass size's calibration (_corrected); a pass size
        not yet calibrated compares raw boxes, with the wider tolerance of a first look."""
        x, y, side = region(self.box, self.context)
        found = find_in_region(self.detector, bgr, x, y, side, int(round(face_px * self.context)), threshold)
        bw, bh = self.box[2], self.box[3]
        # the same face keeps its size from one frame to the next, once the region pass's box is mapped into
        # the full search's geometry (_corrected). A pass size's first look has no mapping yet: when BlazeFace
        # started the track it compares two detectors' boxes, which differ more (on tightly cropped photos
        # BlazeFace's box can be much larger than RetinaFace's region box), so it accepts more there
        raw = face_px not in self._corr
        wide = raw and self._acquired_by == "blazeface"
        lo, hi, min_iou = (0.35, 2.8, 0.2) if wide else (0.6, 1.6, 0.3)
        seen = [(f, f.box if raw else self._corrected(f.box, face_px)) for f in found]
        ok = [(f, b) for f, b in seen if iou(b, self.box) >= min_iou
              and lo <= (b[2] * b[3]) / max(bw * bh, 1e-6) <= hi]
        return max(ok, key=lambda fb: (iou(fb[1], self.box), fb[0].score))[0] if ok else None

    def update(self, image: np.ndarray) -> list[Face]:
        """The main face in this frame ([] when there is none), its box steady while the face is still."""
        bgr = to_bgr(np.asarray(image))
        if self._shape is not None and bgr.shape[:2] != self._shape:
            self.reset()     # another picture, not the next frame: a box from the old one means nothing here
        self._shape = bgr.shape[:2]
        try:
            return self._update(bgr)
        finally:
            self.frame += 1

    def _update(self, bgr: np.ndarray) -> list[Face]:
        if self.box is not None:
            px = self.track_face_px
            f = self._look(bgr, px, self.track_threshold)
            if f is None and self.second_look_px:
                px = self.second_look_px
                f = self._look(bgr, px, self.track_threshold)
            if f is not None:
                self.confirmed += 1
                self.missed, self.face = 0, f
                if px not in self._corr:  # first box of this pass size since the search: how its boxes sit
                    self._calibrate(f.box, px)  # against the tracked one (see _calibrate)
                else:
                    self._smooth(self._corrected(f.box, px))
                self._follow_keypoints(f.landmarks, self._corrected(f.box, px), px)
                return [Face(self.box, f.score, self.landmarks())]
            self.missed += 1
            if self.missed <= self.max_missed:
                self.held += 1
                return [Face(self.box, 0.0, self.landmarks(), held=True)]
        self.searched += 1
        faces = self.detector.detect(bgr)
        if faces and self.verify is not None:
            faces = self.verify(bgr, faces)
        if not faces:
            self.box, self.face = None, None
            return []
        self._acquire(wearer_first(faces)[0])    # the wearer: the rule of every answer
        return [self.face]

    def _calibrate(self, measured, face_px: int) -> None:
        """The region pass sees the face smaller than the full search does (behind a headset RetinaFace's
        box depends on the scale), and the crop geometry (vrfer.faces.square_box) was measured on the
        full search's boxes. So the offset and size ratio between the two on the frame where both looked
        are kept, and every later region box is mapped through them: the crop then matches the one a photo
        of the same face gets, and the region pass only says how the face moved. Each pass size gets its
        own mapping (behind a headset the 160 px and 320 px passes see the face differently), made on its
        first box, against the tracked box: a face whose region pass alternates between the two sizes then
        keeps one box instead of hopping between two geometries."""
        fx, fy, fw, fh = self.box
        mx, my, mw, mh = measured
        self._corr[face_px] = (((fx + fw / 2) - (mx + mw / 2)) / mw, ((fy + fh) - (my + mh)) / mw, fw / mw, fh / mh)

    def _corrected(self, measured, face_px: int) -> tuple:
        dx, db, sw, sh = self._corr[face_px]
        mx, my, mw, mh = measured
        w, h = sw * mw, sh * mh
        cx, bottom = mx + mw / 2 + dx * mw, my + mh + db * mw
        return (cx - w / 2, bottom - h, w, h)

    def landmarks(self) -> np.ndarray | None:
        """The reported landmarks (5, 2): kept relative to the reported box, so they move only with it or past
        the dead band (_follow_keypoints)."""
        if self._kp is None:
            return None
        x, y, w, h = self.box
        return (self._kp * w + np.array([x + w / 2, y + h / 2])).astype(np.float32)

    def _follow_keypoints(self, landmarks, box, face_px: int | None = None) -> None:
        """Smooth a frame's landmarks, as offsets from the centre of its box in the tracked geometry (in box
        widths), and take them for the reported ones once they differ from those by more than the dead band.
        As with boxes (_calibrate), a region pass places the landmarks a little differently from the full
        search (up to 5% of the box width on a still face): each pass size's offset against the reported
        landmarks is kept from its first look and added to its later ones, so a still face keeps the full
        search's landmarks (the crop its photo gets, where the full search gave landmarks; a track that BlazeFace
        started has none, and takes the region pass's). The offset is taken against the reported landmarks, which
        may lag the smoothed ones by up to the dead band: a bias of at most that, until the face is searched again."""
        if landmarks is None or not np.isfinite(landmarks).all():
            return
        x, y, w, h = box
        rel = (np.asarray(landmarks, np.float64) - np.array([x + w / 2, y + h / 2])) / w
        if face_px is not None and self._kp is not None:
            rel = rel + self._kp_corr.setdefault(face_px, self._kp - rel)
        t = self.frame / self.fps
        if self._kp is None:
            self.kp_filter.reset(rel.ravel(), t)
            self._kp = rel
            return
        z = self.kp_filter(rel.ravel(), t).reshape(rel.shape)
        if np.abs(z - self._kp).max() > self.deadband:
            self._kp = z

    def _smooth(self, measured) -> None:
        z = self.filter(self._state(measured), self.frame / self.fps)
        x, y, w, h = self._box(z)
        bx, by, bw, bh = self.box
        moved = max(abs((x + w / 2) - (bx + bw / 2)), abs((y + h / 2) - (by + bh / 2))) / bw
        grown = max(abs(math.log(w / bw)), abs(math.log(h / bh)))
        if moved > self.deadband or grown > self.size_deadband:
            self.box = (x, y, w, h)


__all__ = ["FaceTracker", "OneEuroFilter", "region"]
