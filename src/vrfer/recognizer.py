"""Photos, folders, videos and webcams -> facial expressions of people wearing a VR headset.

    from vrfer.recognizer import Recognizer
    rec = Recognizer()                      # bundled model, face detection, PyTorch
    for p in rec.predict("photo.jpg"):      # a path, a numpy BGR/gray array or a PIL image
        print(p.box, p.label, p.probs)

The path from image to answer is vrfer.inference.pipeline (shared with explain, serve and the exported model
card): find each face (vrfer.faces: RetinaFace, also behind a headset), cut the square crop that FER+
training faces are framed by, scale it to 48x48 grayscale, and hand the full square to the classifier
(its input mode takes the lower half itself). With face="none" the image already is the face crop;
with face=(x, y, w, h) a fixed region (a fixed camera in a VR rig) is the crop.

Video and webcams: one result per frame and face; the face is tracked from frame to frame, and
`alpha` = ALPHA in (0, 1] turns on an exponential moving average of the probabilities (vrfer.inference.smoothing):
smoothed_t = ALPHA * probs_t + (1 - ALPHA) * smoothed_{t-1} (1: off; 0.2: about the last 5 frames).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from .classes import class_name, CLASSES
from .errors import NoFaceError, VrferError
from .faces import to_bgr
from .inference.pipeline import Pipeline
from .inference.images import load_image
from .inputs import Video, is_video, parse_camera, video_frames
from .pretrained import DEFAULT_MODEL
from .results import FacePrediction
from .inference.session import Session
from .threads import use_torch_threads
from .batch.rows import video_table

# ----------------------------------------------------------------------------------------- recognizer

class Recognizer:
    """Facial expressions of headset wearers in photos, frames and video (vrfer.inference.pipeline.Pipeline, plus
    smoothing over frames and face tracking in video).

    model: bundled model name or .safetensors path (or a loaded model object for the torch backend).
    face: "detect" (find faces), "none" (the image is the face crop), or a fixed region (x, y, w, h)
        / "x,y,w,h" (the face square is cut from it as given).
    backend: "auto" (default: a bundled model's int8 ONNX graph when one ships for the installed weights,
        vrfer.export.int8; otherwise PyTorch), "torch" (float32) or "onnx" (vrfer.inference.onnx_backend.OnnxClassifier).
    alpha: smoothing across successive frames (predict calls on a stream, or `video`): the weight of
        the newest frame in an exponential moving average (vrfer.inference.smoothing), in (0, 1]; None or 1: off.
        `reset()` starts a new stream.
    prior, prior_tau, classes: the class prior the answers assume and the classes they may name
        (vrfer.inference.postprocess.PostProcess; default: the plain model over all 8 classes).
    threads: CPU threads of the network and the detector (vrfer.threads: None -> 1, 0 -> one per core;
        sets PyTorch's process-wide thread count).
    profile: a person's calibration (vrfer.personal.calibration.Profile, a profile file or its JSON object).
    reference: the wearer's face read as a change from their neutral face (vrfer.personal.reference): None (default: the
        profile's reference when it carries one, else none), "off", "auto" (a running reference per stream:
        `video`, or predict calls with track=True or stream=True; `reset()` and a lost face start it over; a
        profile's own reference,
        when it carries one, is used instead), or a fixed one (a profile that carries one, its file, or the D
        numbers). Applied to the wearer (the first face) only.
    """

    def __init__(self, model=DEFAULT_MODEL, face="detect", backend: str = "auto", alpha: float | None = None,
                 threads: int | None = None, tta_flip: bool = False, detector=None, prior=None,
                 prior_tau: float | None = None, classes=None, profile=None, reference=None):
        self.threads = use_torch_threads(threads)   # vrfer.threads: one meaning of --threads everywhere
        self.pipeline = Pipeline(model, face, backend, threads, tta_flip, detector, prior, prior_tau, classes,
                                 profile)
        self.face = self.pipeline.face
        self.cfg = self.pipeline.cfg
        self.classes = self.pipeline.classes
        self.backend = backend
        self._tracker = None
        # the one session path (vrfer.inference.session): profile, reference, prior and smoothing, as serve's connections
        self.session = Session(self.pipeline, alpha=alpha, reference=reference)
        if self.session.alpha == 1.0:       # the API's alpha 1: no smoothing (answers without `smoothed`)
            self.session.set_alpha(None)
        self.alpha = self.session.alpha

    @property
    def detector(self):
        return self.pipeline.detector

    def reset(self) -> None:
        """Forget the previous frames (smoothing state, tracked face, automatic reference): a new stream starts."""
        self.session.reset()
        if self._tracker is not None:
            self._tracker.reset()

    def set_reference(self, reference) -> None:
        """Change the reference (see the class docstring for what `reference` may be)."""
        self.session.set_reference(reference)

    @property
    def reference(self):
        """The reference in use: the fixed D numbers, the running reference's current ones (None during its
        warm-up), or None."""
        return self.session.reference_vector

    @property
    def reference_mode(self) -> str:
        """"fixed", "auto" or "off"."""
        return self.session.reference_mode

    # -- the pipeline's steps, for callers that batch them (vrfer.evaluate) -------------------------
    def find_faces(self, image: np.ndarray, track: bool = False):
        """Faces in a loaded image (vrfer.inference.pipeline.find_faces); track=True follows the previous call's face."""
        if track and self._tracker is None:
            self._tracker = self.pipeline.new_tracker()
        return self.pipeline.find_faces(image, self._tracker if track else None)

    def crops(self, image: np.ndarray, faces) -> np.ndarray:
        """uint8 (N, 48, 48) face crops (vrfer.inference.pipeline.crop_faces)."""
        return self.pipeline.crops(image, faces)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Face crops -> reported probabilities (N, 8), with this recognizer's profile, fixed reference, prior and
        classes."""
        s = self.session
        return self.pipeline.classify(crops, s.post, s.reference, s.profile)

    def predict(self, image, source: str | None = None, frame: int | None = None,
                track: bool = False, stream: bool | None = None) -> list[FacePrediction]:
        """Faces and expressions in one image: a path, numpy array (BGR or gray) or PIL image.

        Raises VrferError when the image cannot be read, NoFaceError when no face is found
        (face="detect"). Successive calls are frames of one stream for smoothing; track=True also
        follows the face from the previous call instead of searching the whole image. stream (default: track):
        the call is a frame of a stream, which the automatic reference (reference="auto") learns from; a photo on
        its own is answered without it."""
        if source is None:
            source = str(image) if isinstance(image, (str, os.PathLike)) else ""
        if track and self._tracker is None:
            self._tracker = self.pipeline.new_tracker()
        stream = track if stream is None else stream
        try:
            img = load_image(image)
            faces = self.pipeline.find_faces(img, self._tracker if track else None)
            if not faces:
                raise NoFaceError("no face found")
            seen = self.pipeline.model_faces(img, faces, self.session.wants_representation(stream))
        except NoFaceError:
            if stream:
                self.session.lost()     # the face is lost: the next one may be someone else
            raise NoFaceError("no face found" + (" (try --face none for a face crop, or --face x,y,w,h)"
                                                 if frame is None else "")) from None
        except VrferError as e:
            if isinstance(image, (str, os.PathLike)):   # a caller with many paths needs to know which one
                raise type(e)(f"{str(image) or repr(image)}: {e}") from None
            raise
        return self.session.answer(seen, frame, source, stream)

    def video(self, src, max_frames: int | None = None, progress: bool = False,
              name: str | None = None) -> Iterator[tuple[int, list[FacePrediction] | None]]:
        """Frames of a video file or webcam (an int index, "cam:N", or a vrfer.inputs.Video) -> (frame index, predictions);
        predictions is None for a frame where no face was found. Tracks the face and smooths."""
        if isinstance(src, Video):
            name = name or src.name
        else:
            cam = src if isinstance(src, int) else parse_camera(str(src))
            name = name or (f"cam:{cam}" if cam is not None else str(src))
        self.reset()
        for i, frame in enumerate(video_frames(src, max_frames, name if progress else None)):
            try:
                preds = self.predict(frame, source=name, frame=i, track=self.face == "detect", stream=True)
            except NoFaceError:
                preds = None
            yield i, preds

    # -- calibration to one person (vrfer.personal.calibration) ------------------------------------------------
    @property
    def profile(self):
        """The person's calibration profile in use, or None."""
        return self.session.profile

    def set_profile(self, profile) -> None:
        """Use a profile (a vrfer.personal.calibration.Profile or a profile file) for the answers; None: no calibration.
        VrferError when it was made for another model's weights."""
        self.session.set_profile(profile)

    def enrol(self, examples, person: str = "", max_frames: int = 300, use: bool = True):
        """A calibration profile from labelled faces of one person, used from now on (use=True).

        examples: {class name: images} where images is one or a list of paths, numpy arrays, PIL images, or
        video files (every frame, up to max_frames, is a face of that class); or a list of (image, class)
        pairs. Each image's wearer (its first face, vrfer.faces.wearer_first) is used; an image without a face is
        an error naming it."""
        if isinstance(examples, dict):
            pairs = list(examples.items())
        elif isinstance(examples, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                         for p in examples):
            pairs = [(lbl, im) for im, lbl in examples]
        else:
            raise VrferError("examples: expected {class name: images} or a list of (image, class name) pairs, not "
                             f"{type(examples).__name__}")
        crops, labels = [], []
        for label, imgs in pairs:
            label = class_name(label) if isinstance(label, str) and label not in self.classes else label
            if label not in self.classes:
                raise VrferError(f"unknown class {label!r}; classes: {', '.join(self.classes)}")
            for img in (imgs if isinstance(imgs, (list, tuple)) else [imgs]):
                video = isinstance(img, (str, os.PathLike)) and is_video(img)
                frames = video_frames(img, max_frames, whole=True) if video else [img]
                found = n = 0
                try:
                    for n, frame in enumerate(frames, 1):
                        where = f"{img} frame {n - 1}" if video else (
                            str(img) if isinstance(img, (str, os.PathLike)) else f"a {label} image")
                        try:
                            loaded = load_image(frame)
                            faces = self.pipeline.find_faces(loaded)
                        except VrferError as e:
                            raise VrferError(f"{where}: {e}") from None
                        if not faces:
                            if video:
                                continue        # a frame without a face in a video is skipped
                            raise NoFaceError(f"{where}: no face found")
                        crops.append(self.pipeline.crops(loaded, faces[:1])[0])   # the wearer (wearer_first)
                        labels.append(label)
                        found += 1
                except VrferError as e:
                    # the video's own errors (cannot open, no frame) name the file; a frame's and an image's already do
                    if not video or str(e).startswith(str(img)):
                        raise
                    raise type(e)(f"{img}: {e}") from None
                if video and not found:
                    raise NoFaceError(f"{img}: no face found in any of its {n} frames")
        if not crops:
            raise VrferError("no face to calibrate on")
        profile = self.pipeline.enrol(np.stack(crops), labels, person)
        if use:
            self.set_profile(profile)
        return profile

    def annotate(self, image: np.ndarray, preds: list[FacePrediction]) -> np.ndarray:
        """A BGR copy of the image with each face's box and label, and the square this model read (annotate)."""
        cfg = self.cfg
        return annotate(image, preds, hidden=cfg.occlusion if cfg.input_mode != "full" else 0.0)

    def video_table(self, src, max_frames: int | None = None, progress: bool = False, name: str | None = None):
        """`video` as a pandas DataFrame: one row per face per frame, the columns of `vrfer batch`'s frame rows
        (vrfer.batch.rows); frames without a face give none. Needs pandas and pyarrow (the batch extra)."""
        camera = isinstance(src, int) or parse_camera(str(src)) is not None
        return video_table(self, src, max_frames, progress, name, camera)


SQUARE_BGR = (255, 160, 0)      # the square the model read (annotate); the detector's box is green


def annotate(image: np.ndarray, preds: list[FacePrediction], min_side: int = 256,
             hidden: float = 0.0) -> np.ndarray:
    """A BGR copy of the image with each face's box (green) and label drawn, and the square the model read
    (FacePrediction.square, blue: a thin outline, the rows the model reads framed thick; hidden: the fraction
    of the square's top rows it does not read, the headset's half for a visible-half model). Small images (a
    48x48 face crop) are first scaled up to `min_side` so that the label can be read."""
    import cv2
    out = to_bgr(np.asarray(image)).copy()
    k = 1
    if min(out.shape[:2]) < min_side:
        k = -(-min_side // max(1, min(out.shape[:2])))
        out = cv2.resize(out, (out.shape[1] * k, out.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    h, w = out.shape[:2]
    for p in preds:
        x, y, bw, bh = (v * k for v in p.box)
        t = max(1, round(min(h, w) / 250))
        if p.square is not None:
            sx, sy, side = (v * k for v in p.square)
            cv2.rectangle(out, (sx, sy), (sx + side, sy + side), SQUARE_BGR, t)
            cv2.rectangle(out, (sx, sy + round(hidden * side)), (sx + side, sy + side), SQUARE_BGR, 2 * t)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), (40, 220, 40), t)
        text = f"{p.label} {p.score:.2f}"
        scale = max(0.4, min(h, w) / 700)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
        tx = min(max(0, x), max(0, w - tw - 4))
        ty = y - 4 if y - th - 6 >= 0 else min(h - base - 2, y + bh + th + 4)
        cv2.rectangle(out, (tx, ty - th - 3), (tx + tw + 4, ty + base - 1), (40, 220, 40), -1)
        cv2.putText(out, text, (tx + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), t, cv2.LINE_AA)
    return out


__all__ = ["DEFAULT_MODEL", "FacePrediction", "Recognizer", "load_image", "annotate", "CLASSES"]
