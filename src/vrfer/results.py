"""One face's answer in one image or video frame: the one result type of every path. `vrfer predict` (table,
JSON, CSV), `vrfer explain --json`, the faces of `vrfer serve`'s prediction events (docs/PROTOCOL.md) and the
Python API (vrfer.recognizer.Recognizer.predict) all report a FacePrediction, written by its `to_dict`.

- Label rule: a label is the class of highest probability, taken from the unrounded probabilities (the first in
  class order on a tie). `label` and `score` are those of `probs`, the answer for this image or frame;
  `smoothed_label` those of `smoothed`, the running average over frames (vrfer.inference.smoothing), when there is one.
- Rounding: probabilities, scores and the face score are written with DECIMALS decimals.
- `square`: the square the face was cut from (x, y, side, whole image pixels; vrfer.inference.pipeline.crop_faces): what
  the model read, of which a visible-half model reads the lower half. `box` is the detector's box (or the given
  region); the square is placed from it by the model's crop rule (vrfer.faces.CropGeometry).
- Order: the faces of one image come wearer first (vrfer.faces.wearer_first, the one rule).
- `held`: the face tracker (vrfer.faces.tracking) did not see the face in this frame and kept its last box; what is
  in that box was scored. Always false for a photo, a fixed box, or detection without tracking.
"""

from __future__ import annotations

from dataclasses import dataclass

DECIMALS = 6        # decimals of every probability and score written out (JSON, CSV, serve's events)


def top(probs: dict) -> str:
    """The label of {class: probability}: the most probable class, the first in class order on a tie."""
    return max(probs, key=probs.get)


@dataclass
class FacePrediction:
    """One face in one image or video frame."""

    source: str                          # file, folder/file, "cam:0", or "" for an in-memory image
    frame: int | str | None              # frame index in a video or webcam stream (serve: the frame's id), None
                                         # for a photo
    box: tuple[int, int, int, int]       # face box x, y, w, h in image pixels
    probs: dict[str, float]              # this frame's answer, the classes in vrfer.classes.CLASSES order
    smoothed: dict[str, float] | None = None   # EMA of probs over frames, when smoothing is on (vrfer.inference.smoothing)
    face_score: float | None = None      # detector confidence (None: the face was given, not detected; 0.0 for
                                         # a held face)
    held: bool = False                   # the tracker did not see the face in this frame and kept its last box
    square: tuple[int, int, int] | None = None   # the square cut for the model: x, y, side in image pixels

    @classmethod
    def of(cls, box, probs, classes, smoothed=None, face_score: float | None = None, held: bool = False,
           source: str = "", frame=None, square=None) -> "FacePrediction":
        """From probabilities in class order (arrays or lists)."""
        return cls(source=source, frame=frame, box=tuple(int(v) for v in box),
                   probs={c: float(v) for c, v in zip(classes, probs)},
                   smoothed=None if smoothed is None else {c: float(v) for c, v in zip(classes, smoothed)},
                   face_score=None if face_score is None else float(face_score), held=bool(held),
                   square=None if square is None else tuple(int(v) for v in square))

    @property
    def label(self) -> str:
        """The most probable class of this frame's probabilities."""
        return top(self.probs)

    @property
    def score(self) -> float:
        """The probability of `label`."""
        return self.probs[self.label]

    @property
    def smoothed_label(self) -> str | None:
        """The most probable class of the smoothed probabilities (None without smoothing)."""
        return None if self.smoothed is None else top(self.smoothed)

    def to_dict(self, arrays: bool = False, where: bool = True) -> dict:
        """The face as JSON: [source, frame,] box, [square,] label, score, probs, [smoothed, smoothed_label,]
        [face_score,] held. arrays: probabilities as lists in class order instead of {class: p}; where=False: without
        source and frame (serve's events carry them once, for every face)."""
        def probs(p: dict):
            values = [round(v, DECIMALS) for v in p.values()]
            return values if arrays else dict(zip(p, values))

        d = {"source": self.source, "frame": self.frame} if where else {}
        d["box"] = [int(v) for v in self.box]
        if self.square is not None:
            d["square"] = [int(v) for v in self.square]
        d.update(label=self.label, score=round(self.score, DECIMALS), probs=probs(self.probs))
        if self.smoothed is not None:
            d.update(smoothed=probs(self.smoothed), smoothed_label=self.smoothed_label)
        if self.face_score is not None:
            d["face_score"] = round(self.face_score, DECIMALS)
        d["held"] = self.held
        return d


__all__ = ["DECIMALS", "FacePrediction", "top"]
