"""One stream of frames of one wearer, from what the model saw to the answers reported: the one session path of
the Python API (vrfer.recognizer.Recognizer, and through it `vrfer predict`, `batch` and `calibrate`) and of each
`vrfer serve` connection (vrfer.serve.app, which adds only the transport).

A frame's faces come in as the model saw them (`ModelFace`, made by vrfer.inference.pipeline.Pipeline.model_faces, or by
serve's engine for a batch of frames of many connections), the wearer first. `Session.answer` then applies, in
this order:

1. calibration capture: while capturing an expression, the wearer's crop is kept for the profile (`finish`);
2. the profile's rows and the wearer's reference (vrfer.inference.pipeline.Pipeline.answer: the one place of that
   arithmetic); the reference is fixed (a neutral enrolment, a profile's, one given) or automatic
   (vrfer.personal.reference.RunningReference: learnt from this stream's own frames, reset when the face is lost);
3. the prior and class subset (vrfer.inference.postprocess.PostProcess);
4. smoothing over the stream's frames (vrfer.inference.smoothing.Smoother), one per channel (serve keeps a connection's own
   frames and a broadcast camera's apart);

and gives vrfer.results.FacePrediction, the one output type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import VrferError
from ..faces import Face
from ..results import FacePrediction
from .smoothing import Smoother, check_alpha
from ..personal.reference import RunningReference

OFF, AUTO = "off", "auto"
MAX_CAPTURED = 2000      # faces one session keeps for a calibration (serve's limit, docs/PROTOCOL.md)


@dataclass
class ModelFace:
    """One face of a frame as the model saw it, before anything of the wearer is applied.

    face: where it is (vrfer.faces.Face: box, score, held, square). probs: the model's own answer (C,), float64.
    logits, representation: the model's own (C,) and (D,), present when they were asked for (a profile, a
    reference or a calibration needs them). crop: the uint8 crop the model read (a calibration keeps it)."""

    face: Face
    probs: np.ndarray
    logits: np.ndarray | None = field(default=None, repr=False)
    representation: np.ndarray | None = field(default=None, repr=False)
    crop: np.ndarray | None = field(default=None, repr=False)


class Session:
    """One stream of one wearer (see the module docstring).

    pipeline: the vrfer.inference.pipeline.Pipeline answering (its profile and fixed reference are the session's to start
    with). post: prior and class subset (default: the pipeline's). alpha: smoothing (`set_alpha`).
    reference: None (the pipeline's fixed one, or none), "off", "auto" (a running reference; a fixed one in use
    stays: explicit beats automatic) or a fixed one (a profile carrying one, its file, or the D numbers).
    max_captured: the most faces a calibration keeps."""

    def __init__(self, pipeline, post=None, alpha: float | None = None, reference=None,
                 max_captured: int = MAX_CAPTURED):
        self.pipeline = pipeline
        self.classes = pipeline.classes
        self.post = post or pipeline.post
        self.alpha = None
        self._smoothers: dict = {}
        self.set_alpha(alpha)
        self.profile = pipeline.profile
        self.reference = pipeline.reference          # fixed: (D,) or None
        self.running = None                          # automatic: a RunningReference or None
        self.capture: list | None = None             # [label, frames left] while capturing
        self.captured: tuple[list, list] = ([], [])  # crops, labels
        self.just_captured: str | None = None        # the label whose capture the last frame finished
        self.max_captured = max_captured
        self.set_reference(reference)

    # -- settings ----------------------------------------------------------------------------------
    def set_alpha(self, alpha: float | None) -> None:
        """Smoothing weight of the newest frame (vrfer.inference.smoothing.check_alpha); None: off (answers carry no
        smoothed probabilities; 1 gives them equal to the frame's own)."""
        self.alpha = None if alpha is None else check_alpha(alpha)
        for s in self._smoothers.values():
            s.alpha = 1.0 if self.alpha is None else self.alpha

    def set_profile(self, profile) -> None:
        """A person's profile (checked against the model, vrfer.personal.profile_check), None: none. A profile
        carrying a reference also gives the fixed reference when the model has a referenced head."""
        self.profile = None if profile is None else self.pipeline.check_profile(profile)
        if self.profile is not None and self.profile.reference is not None and self.has_head:
            self.reference = self.profile.reference

    @property
    def has_head(self) -> bool:
        return self.pipeline.referenced_head is not None

    def set_reference(self, reference) -> None:
        """None: keep the current one; "off": none; "auto": a running reference (a fixed one in use stays);
        anything else: a fixed one (vrfer.inference.pipeline.Pipeline.reference_vector checks it)."""
        if reference is None:
            return
        if isinstance(reference, str) and reference in (OFF, AUTO):
            self.running = None
            if reference == OFF:
                self.reference = None
            else:
                if not self.has_head:
                    raise VrferError(f"model {self.pipeline.cfg.name!r} has no referenced head: reference=\"auto\" "
                                     "needs one")
                self.running = RunningReference(self.classes)
            return
        self.reference = self.pipeline.reference_vector(reference)

    def clear_reference(self) -> None:
        self.reference, self.running = None, None

    @property
    def reference_mode(self) -> str:
        """"fixed", "auto" or "off"."""
        return "fixed" if self.reference is not None else AUTO if self.running is not None else OFF

    @property
    def reference_vector(self):
        """The reference in use: the fixed D numbers, the running one's (None during its warm-up), or None."""
        if self.reference is not None:
            return self.reference
        return None if self.running is None else self.running.vector

    def wants_representation(self, stream: bool = True) -> bool:
        """Whether the next frame's faces need the model's logits and representation (stream: as `answer`)."""
        return (self.profile is not None or self.reference is not None
                or (stream and (self.running is not None or self.capture is not None)))

    # -- answers -----------------------------------------------------------------------------------
    def answer(self, faces: list[ModelFace], frame=None, source: str = "", stream: bool = True,
               channel=None) -> list[FacePrediction]:
        """One frame's faces (the wearer first) -> the reported answers. stream: the frame belongs to a stream
        (a calibration captures its wearer; the automatic reference learns from it); a photo on its own does not.
        channel: which smoothing the frame belongs to; the automatic reference learns from channel None only (a
        serve connection's own frames, not a broadcast camera's)."""
        self.just_captured = None
        if not faces:
            if stream and channel is None:
                self.lost()
            return []
        if stream:
            self._capture(faces[0])
        own = stream and channel is None
        ref = self.reference
        if ref is None and own and self.running is not None:   # a held face is read against it, never learnt from
            ref = self.running.vector if faces[0].face.held else self.running
        if self.profile is not None or ref is not None:
            if any(f.logits is None for f in faces):
                raise RuntimeError("a profile or reference needs the faces' logits and representation "
                                   "(ask for them when Session.wants_representation)")
            probs = self.pipeline.answer(np.stack([f.logits for f in faces]),
                                         np.stack([f.representation for f in faces]), self.profile, ref)
        else:
            probs = np.stack([np.asarray(f.probs, np.float64) for f in faces])
        probs = self.post.apply(probs)
        smoothed = [None] * len(faces)
        if self.alpha is not None:
            smoother = self._smoothers.setdefault(channel, Smoother(self.alpha))
            smoothed = smoother.update([f.face.box for f in faces], probs)
        detect = self.pipeline.face == "detect"
        return [FacePrediction.of(f.face.int_box(), p, self.classes, s, f.face.score if detect else None,
                                  f.face.held, source or "", frame, f.face.square)
                for f, p, s in zip(faces, probs, smoothed)]

    def lost(self) -> None:
        """The stream's face is lost: the next one may be someone else (the automatic reference starts over)."""
        if self.running is not None:
            self.running.reset()

    def reset(self) -> None:
        """A new stream: smoothing and the automatic reference start over."""
        for s in self._smoothers.values():
            s.reset()
        self.lost()

    # -- calibration to the wearer (vrfer.personal.calibration) ---------------------------------------------
    def start_capture(self, label: str, frames: int) -> None:
        """Capture the wearer's face of the next `frames` frames of the stream as `label`."""
        if label not in self.classes:
            raise VrferError(f"unknown class {label!r}; classes: {', '.join(self.classes)}")
        if len(self.captured[1]) >= self.max_captured:
            raise VrferError(f"{self.max_captured} faces captured already, the most a session keeps: finish or clear")
        self.capture = [label, int(frames)]

    def stop_capture(self) -> None:
        self.capture = None

    def capture_counts(self) -> dict:
        labels = self.captured[1]
        return {c: labels.count(c) for c in self.classes if c in labels}

    def _capture(self, face: ModelFace) -> None:
        # a held face (the tracker kept its last box) is not this frame's face: not captured
        if self.capture is None or face.face.held or face.crop is None:
            return
        label = self.capture[0]
        self.captured[0].append(face.crop)
        self.captured[1].append(label)
        self.capture[1] -= 1
        if self.capture[1] <= 0 or len(self.captured[1]) >= self.max_captured:
            self.capture, self.just_captured = None, label

    def finish(self, person: str = "", use: bool = True):
        """The profile of what was captured (vrfer.inference.pipeline.Pipeline.enrol), used from now on (use=True)."""
        crops, labels = self.captured
        if not labels:
            raise VrferError("no face captured yet")
        self.capture = None
        profile = self.pipeline.enrol(np.stack(crops), labels, person)
        if use:
            self.set_profile(profile)
        return profile

    def clear_calibration(self) -> None:
        """Drop the captured faces and the session's own profile and reference: back to the pipeline's."""
        self.capture, self.captured = None, ([], [])
        self.profile, self.reference = self.pipeline.profile, self.pipeline.reference
        self.running = None
        if self.has_head:
            self.set_reference(AUTO)


__all__ = ["ModelFace", "Session", "MAX_CAPTURED"]
