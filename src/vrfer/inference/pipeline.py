"""Image -> faces -> crops -> probabilities: the one path that `vrfer predict`, `explain`, `serve`, the
Python API (vrfer.recognizer.Recognizer) and the exported model card all follow.

1. load:      any image (file, bytes, numpy array, PIL image) -> uint8 gray (H, W) or BGR (H, W, 3)
              (vrfer.inference.images.load_image: 8/16-bit, gray/colour/alpha/palette/CMYK, EXIF orientation)
2. faces:     `face` = "detect" (RetinaFace with BlazeFace's second opinion, vrfer.faces), "none" (the image
              is the face) or a box x, y, w, h (`parse_face` reads all three)
3. crop:      each face -> a uint8 48x48 grayscale square (vrfer.faces.crop_region: the FER+ framing
              for a detected face; the box centred in a square of its longer side otherwise; the
              border replicated where the square leaves the image; area-averaged when shrinking)
4. classify:  the crops -> the model's probabilities (torch or onnxruntime, vrfer.inference.preprocess.prepare)
5. adjust:    `PostProcess` / `adjust_probs`: an optional class prior and class subset

Step 5 lives in vrfer.inference.postprocess; vrfer.inference.pipeline_spec.preprocessing_spec writes steps 1-5 down as data (from
the constants the code uses), for the ONNX file's metadata and examples/onnx_client.py, which repeats them
without vrfer.

    >>> from vrfer.inference.pipeline import Pipeline, adjust_probs
    >>> pipe = Pipeline("vrfer-lower", face="none")          # or "detect", or (x, y, w, h)
    >>> faces, crops, probs = pipe.run("face.png")           # probs: (faces, 8), vrfer.classes order
    >>> adjust_probs(probs, pipe.cfg, prior="uniform")        # the model must store its training prior
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import NoFaceError, VrferError
from ..faces import (
    FER_SIZE,
    Face,
    centre_inside,
    check_box,
    crop_region,
    crop_square,
    iou,
    pixel_square,
    to_gray,
    wearer_first,
)
from .images import MIN_SIDE, load_image
from .loader import resolve
from .postprocess import PostProcess, adjust_probs, softmax  # noqa: F401  (adjust_probs: the pipeline's step 5)
from ..pretrained import DEFAULT_MODEL
from ..personal.reference import check_reference, HEAD_KEY, head_of
from ..faces.tracking import FaceTracker
from ..personal.calibration import enrol, Profile
from ..personal.profile_check import check_profile
from .session import ModelFace
from .representation import head, logits_and_features
from ..faces.registry import DEFAULT_DETECTOR, get_detector
from ..faces.mouth_check import check_of, KEY
from ..fingerprint import MODEL_SHA256_KEY

MAX_BOX = 16384                  # largest coordinate of a fixed face box (--face x,y,w,h), in pixels


# ------------------------------------------------------------------------------------------- 2. faces

def parse_face(spec):
    """'detect' | 'none' | 'x,y,w,h' (or a 4-tuple) -> 'detect' | 'none' | (x, y, w, h) in whole pixels
    (numbers rounded to the nearest pixel); VrferError for anything else."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("detect", "none"):
            return s
        parts = s.split(",")
    else:
        parts = list(spec) if isinstance(spec, (list, tuple, np.ndarray)) else []   # face=5: refused below
    try:
        box = tuple(int(round(float(v))) for v in parts)
    except (TypeError, ValueError, OverflowError):
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise VrferError(f"face {spec!r}: expected x,y,w,h (pixels, w and h > 0, e.g. 120,80,200,200), "
                         "detect or none")
    if max(abs(v) for v in box) > MAX_BOX:   # the crop is padded out to the box: a huge one cannot be held
        raise VrferError(f"face {spec!r}: x, y, w and h must be within {MAX_BOX} pixels")
    return box


def find_faces(image: np.ndarray, face, detector=None, tracker=None) -> list[Face]:
    """The faces of a loaded image (uint8 gray or BGR) for a parsed `face` setting, best first.

    "none": the whole image; a box: that box (VrferError when it lies outside the image); "detect":
    the tracker's face when a tracker (video, one face followed between frames) is given, else every
    face the detector finds searching the image as a photo (detect_photo; possibly none), the wearer first
    (vrfer.faces.wearer_first: the rule of every answer)."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise VrferError(f"image is {w}x{h} pixels: too small to hold a face")
    if face == "none":
        return [Face((0.0, 0.0, float(w), float(h)), 1.0)]
    if face != "detect":
        check_box(face, w, h)
        x, y, bw, bh = face
        return [Face((float(x), float(y), float(bw), float(bh)), 1.0)]
    if tracker is not None:
        return list(tracker.update(image))
    # a photo is searched harder than a video frame where the detector offers it (RetinaFaceDetector.detect_photo)
    search = getattr(detector, "detect_photo", None) or detector.detect
    return wearer_first(search(image))


def crop_faces(image: np.ndarray, faces: list[Face], face, crop=None) -> np.ndarray:
    """uint8 (N, 48, 48) grayscale squares of the faces, framed as FER+ faces when detected (the model
    takes the lower half itself: hand it the full square). crop: how a detected face's square is placed
    (vrfer.faces.CropGeometry, a rule name, or None: the defaults; the pipeline passes its model's).
    Sets each face's `square`: the whole pixels (x, y, side) it was cut from, what every answer reports."""
    if not faces:
        return np.zeros((0, FER_SIZE, FER_SIZE), np.uint8)
    gray = to_gray(image)
    out = []
    for f in faces:
        f.square = pixel_square(*crop_region(f.box, f.landmarks, face == "detect", crop))
        out.append(crop_square(gray, *f.square, FER_SIZE))
    return np.stack(out)


# ------------------------------------------------------------------------------------ 4. classify

OWN = object()   # `probabilities(reference=OWN)`: the pipeline's own fixed reference (None: no reference)


FACE_CROP_SIDE = 640    # a photo this small (VGA) whose face fills half of it is a face crop (Pipeline.with_mouth)
# Two networks sure of one face (the original RetinaFace and the one fine-tuned behind headsets, both scoring at
# least AGREE_SCORE) need only AGREE_P from the mouth check: turned or tilted wearers whose lower face the check
# doubts (benchmarks/headset_scenes.py, chosen on the `tune` split; docs/RESULTS.md, issue 33)
AGREE_SCORE, AGREE_P = 0.99, 0.1
MOUTH_HIDDEN = 0.55     # a mouth this high in a square is blacked out, or at the edge of what the model reads


def mouth_hidden(square, landmarks) -> bool:
    """Whether the mouth (the centre of landmarks' mouth corners) lies in the square's upper MOUTH_HIDDEN share."""
    if landmarks is None or square is None:
        return False
    mx, my = np.asarray(landmarks, np.float64)[3:5].mean(axis=0)
    x, y, side = square
    return x <= mx <= x + side and y <= my < y + MOUTH_HIDDEN * side


def _has_head(cfg) -> bool:
    return HEAD_KEY in (getattr(cfg, "extra", None) or {})


class Pipeline:
    """One model, one face setting, one post-processing: images -> faces with probabilities.

    model: bundled model name, .safetensors file, run folder, .onnx file, a loaded model, or a
    vrfer.inference.loader.ModelSource (what `resolve` made of one). face: "detect", "none" or a box (x, y, w, h) /
    "x,y,w,h". backend: "auto", "torch" or "onnx" (vrfer.inference.loader). threads: vrfer.threads (None -> 1, 0 -> one per core).
    prior, prior_tau, classes: see PostProcess (default: the model's own setting, cfg.extra["default_post"]).
    """

    def __init__(self, model=DEFAULT_MODEL, face="detect", backend: str = "auto", threads: int | None = None,
                 tta_flip: bool = False, detector=None, prior=None, prior_tau: float | None = None, classes=None,
                 profile=None):
        self.face = parse_face(face)
        self.threads = threads
        self.backend = backend
        self.source = resolve(model, backend)   # the one reading of the model spec (vrfer.inference.loader)
        self._tta_flip = tta_flip
        self._torch = None
        self.classifier = self.source.classifier(threads, tta_flip)
        self.cfg = self.classifier.cfg
        self.classes = tuple(self.cfg.classes)
        self.post = PostProcess(self.cfg, prior, prior_tau, classes)
        self.crop = self.cfg.crop_geometry    # how a detected face's square is placed: the model's own
        self.profile = None
        self.reference = None       # the wearer's fixed reference (D,), vrfer.personal.reference; None: none
        self._ref_head = False      # the model's referenced head, read on first use
        if profile is not None:
            self.set_profile(profile)
        self._detector = detector
        self._mouth_check = False   # read from the config on first use (vrfer.faces.mouth_check)
        self._plain = None          # the classifier without flip averaging, for the mouth check under tta_flip
        if self.face == "detect" and not hasattr(detector, "detect"):
            _ = self.detector   # now: a missing detector is a setup error, said once

    @property
    def detector(self):
        """The face detector: the one given, or the shared one of the registry name given (None: the default,
        vrfer.faces.registry)."""
        if self._detector is None or isinstance(self._detector, str):
            self._detector = get_detector(self._detector or DEFAULT_DETECTOR, threads=self.threads)
        return self._detector

    def new_tracker(self):
        """A tracker that follows the main face from frame to frame (face="detect"), else None."""
        if self.face != "detect":
            return None
        return FaceTracker(self.detector, verify=self.with_mouth)

    def find_faces(self, image: np.ndarray, tracker=None) -> list[Face]:
        """The faces of a loaded image, the wearer first: find_faces, and for a photo (no tracker) only the
        detected faces that pass the model's mouth check (a tracker checks the face it acquires itself)."""
        faces = find_faces(image, self.face, self.detector if self.face == "detect" else None, tracker)
        return self.with_mouth(image, faces) if tracker is None and self.face == "detect" else faces

    @property
    def mouth_check(self):
        """The model's mouth check (vrfer.faces.mouth_check), None when it has none."""
        if self._mouth_check is False:   # the weights file's config (a bundled int8 graph carries an older copy)
            cfg = self.source.cfg if KEY in (getattr(self.source.cfg, "extra", None) or {}) else self.cfg
            self._mouth_check = check_of(cfg)
        return self._mouth_check

    def with_mouth(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """The detected faces whose visible half holds a mouth by the model's mouth check (all of them when the
        model has none): a headset's front, a hand round a controller, a wall or a chin taken for a face is
        dropped. In a photo of at most FACE_CROP_SIDE pixels a face whose square covers half of it or more is
        kept unchecked: the photo is a face crop (small, blurred ones fail the check; faces-dev). Where the
        detector gives an `alternate` (RetinaFaceDetector's second look: the fine-tuned network's face at the same
        place), a face both networks are sure of needs only AGREE_P, a face whose square would black out the
        alternate's mouth is read as the alternate, and a refused face gives way to its alternate. One pass of the
        model over the crops, without flip averaging."""
        check = self.mouth_check
        if check is None or not faces:
            return faces
        if self._tta_flip:
            if self._plain is None:
                self._plain = self.source.classifier(self.threads, False)
            clf = self._plain
        else:
            clf = self._calibrating_classifier()
        alternates = [f.alternate for f in faces if f.alternate is not None]
        _, feats = clf.logits_and_features(np.ascontiguousarray(self.crops(image, faces + alternates)))
        h, w = image.shape[:2]     # a face crop: a photo of at most FACE_CROP_SIDE px, half of it or more the square
        crop = max(h, w) <= FACE_CROP_SIDE
        p = {id(f): float(q) for f, q in zip(faces + alternates, check.probability(feats))}
        passed = {id(f): p[id(f)] >= check.threshold or (crop and f.square[2] ** 2 >= 0.5 * h * w)
                  for f in faces + alternates}
        for f in faces:
            a = f.alternate
            if a is not None and min(f.score, a.score) >= AGREE_SCORE and max(p[id(f)], p[id(a)]) >= AGREE_P:
                passed[id(f)] = True
        # the original network boxed only what is below a headset (the visible nose, mouth and chin) as a whole
        # face, and the square placed for it blacks out the mouth and reads chin and collar: where the fine-tuned
        # network's mouth lies in that square's upper MOUTH_HIDDEN share, its face is read instead if it passes
        out = []
        for f in faces:
            a = f.alternate
            g = a if a is not None and passed[id(a)] and mouth_hidden(f.square, a.landmarks) else f
            if passed[id(f)] and not any(g is o for o in out):
                out.append(g)
        for f in faces:     # a refused face gives way to its alternate (another detector's face there) if it passes,
            a = f.alternate  # and if no face kept already covers that place
            if passed[id(f)] or a is None or not passed[id(a)] or any(
                    a is o or iou(a.box, o.box) > 0.3 or centre_inside(a.box, o.box) or centre_inside(o.box, a.box)
                    for o in out):
                continue
            out.append(a)
        return wearer_first(out)

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return crop_faces(image, faces, self.face, self.crop)

    def _calibrating_classifier(self):
        """The classifier a profile is applied through: the one answering when it gives the representation
        (PyTorch, or an ONNX graph with the `representation` output, vrfer.inference.onnx_backend). Under backend
        "auto", a graph without it (a shipped int8 file exported before that output) gives way to the
        PyTorch model of the same weights; an .onnx file or backend "onnx" without it is refused."""
        if self._tta_flip:
            raise VrferError("calibration does not take flip averaging")
        if getattr(self.classifier, "has_representation", False):
            return self.classifier
        if self.backend != "auto" or self.source.is_onnx_file:
            where = self.source.spec if self.source.is_onnx_file else "the model's ONNX export"
            raise VrferError(f"{where}: has no `representation` output (exported by an older vrfer): export it "
                             "again to calibrate with it, or use --backend torch")
        self.classifier = self.source.as_torch().classifier(self.threads)
        return self.classifier

    def torch_model(self):
        """The PyTorch model of this pipeline's weights: the classifier's own, or loaded once beside an ONNX
        classifier (which keeps answering). Enrolment fits a profile on it (float32, whatever answers)."""
        if hasattr(self.classifier, "model"):
            return self.classifier.model
        if self._torch is None:
            self._torch = self.source.torch_model().eval()
        return self._torch

    def model_sha256(self) -> str:
        """vrfer.fingerprint of the weights answering, what a profile must name: computed
        from the PyTorch weights, or, for an .onnx file given as the model, as recorded in its metadata at
        export (vrfer.fingerprint.MODEL_SHA256_KEY)."""
        if not hasattr(self, "_fingerprint"):
            recorded = getattr(self.classifier, "model_sha256", None)
            if self.source.is_onnx_file:
                if not recorded:
                    raise VrferError(f"{self.source.spec}: records no model fingerprint ({MODEL_SHA256_KEY}; "
                                     "exported by an older vrfer): export it again to use a profile with it")
                self._fingerprint = recorded
            else:
                self._fingerprint = self.source.fingerprint
                if recorded and recorded != self._fingerprint:   # never seen: the cache and int8 file are keyed
                    raise VrferError(f"{getattr(self.classifier, 'path', None) or 'the ONNX graph'}: exported from "
                                     "other weights than the model's; use --backend torch")
        return self._fingerprint

    def set_profile(self, profile) -> None:
        """Calibrate to one person: a vrfer.personal.calibration.Profile, a profile file, its JSON object (a dict), or
        None (no calibration). VrferError when it is damaged or made for other weights (vrfer.personal.profile_check)."""
        if profile is None:
            self.profile = None
            return
        self.profile = self.check_profile(profile)
        if self.profile.reference is not None and self.referenced_head is not None:   # else only its rows apply
            self.set_reference(self.profile.reference)

    @property
    def referenced_head(self):
        """The model's referenced head (vrfer.personal.reference.ReferencedHead), or None when the model has none."""
        if self._ref_head is False:
            cfg = self.source.cfg if _has_head(self.source.cfg) else self.cfg
            self._ref_head = head_of(cfg, self.representation_width()) if _has_head(cfg) else None
        return self._ref_head

    def set_reference(self, reference) -> None:
        """Read the wearer's face against a fixed reference (`reference_vector`), or None (none)."""
        self.reference = None if reference is None else self.reference_vector(reference)

    def reference_vector(self, reference) -> np.ndarray:
        """A fixed reference checked against this model: a profile (object, file or JSON object) that carries one,
        or the D numbers themselves. VrferError when the model has no referenced head, or the reference does not
        fit it."""
        if isinstance(reference, (Profile, dict, str, os.PathLike)):
            where = str(reference) if isinstance(reference, (str, os.PathLike)) else "profile"
            prof = self.check_profile(reference)
            if prof.reference is None:
                raise VrferError(f"{where}: the profile carries no reference (calibrate with neutral=... to make one)")
            reference = prof.reference
        if self.referenced_head is None:
            raise VrferError(f"model {self.cfg.name!r} has no referenced head: it cannot read a face against a "
                             "reference (vrfer adapt fits one on a folder with neutral photos)")
        return check_reference(reference, self.representation_width())

    def representation_width(self) -> int:
        """D, the width of the representation a profile's rows multiply (vrfer.inference.representation)."""
        clf = self._calibrating_classifier()
        if hasattr(clf, "model"):
            return head(clf.model).in_features
        width = getattr(clf, "representation_width", None)
        if not isinstance(width, int):      # a graph with a symbolic width: the PyTorch model's
            width = head(self.torch_model()).in_features
        return width

    def check_profile(self, profile, where: str | None = None):
        """A profile (a vrfer.personal.calibration.Profile, a profile file, or its JSON object) checked against this
        pipeline's model by vrfer.personal.profile_check: the one door, for the API, the CLI and serve."""
        if not isinstance(profile, (Profile, dict, str, os.PathLike)):
            raise VrferError(f"profile={type(profile).__name__}: a profile is a vrfer.personal.calibration.Profile, a profile "
                             "file's path or its JSON object (a dict)")
        if isinstance(profile, str):
            profile = Path(profile)      # a string is a path here (JSON text comes as a dict)
        return check_profile(profile, self.cfg, self.representation_width(), self.model_sha256(), where)

    def logits_and_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops -> (logits (N, C), representations (N, D)) from the classifier that answers
        (vrfer.inference.representation; the ONNX graph's `representation` output)."""
        return self._calibrating_classifier().logits_and_features(np.ascontiguousarray(crops))

    def answer(self, logits: np.ndarray, feats: np.ndarray, profile=None, reference=None) -> np.ndarray:
        """The model's logits and representations of a frame's faces (wearer first) -> the probabilities (N, C),
        float64, before post-processing: the profile's rows (vrfer.personal.calibration), then the wearer's face read
        against the reference (vrfer.personal.reference). The one place both are applied, for the API, the CLI and serve.
        profile: a Profile, or None for none. reference: None (none), the D numbers, or a
        vrfer.personal.reference.RunningReference, which sees the wearer's face first (the automatic reference)."""
        z = profile.apply(logits, feats, self.classes) if profile is not None else np.asarray(logits, np.float64)
        if reference is not None and len(z):
            if not isinstance(reference, np.ndarray):           # a RunningReference: it sees the wearer first
                reference = reference.observe(feats[0], softmax(z[:1])[0])
            if reference is not None and self.referenced_head is not None:
                wearer = self.referenced_head.logits(z[:1], feats[:1], reference)
                z = wearer if len(z) == 1 else np.concatenate([wearer, z[1:]])
        return softmax(z)

    def model_outputs(self, crops: np.ndarray, representation: bool = False):
        """uint8 crops -> (the model's own probabilities (N, C) float64, logits (N, C), representations (N, D)): one
        pass of the model; logits and representations only when asked for (else None)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float64), None, None
        if representation:
            logits, feats = self.logits_and_features(crops)
            return softmax(np.asarray(logits, np.float64)), logits, feats
        return np.asarray(self.classifier.predict_proba(np.ascontiguousarray(crops)), dtype=np.float64), None, None

    def model_faces(self, image: np.ndarray, faces: list[Face], representation: bool = False):
        """A loaded image's faces -> what the model saw of each (vrfer.inference.session.ModelFace), for a session to answer."""
        crops = self.crops(image, faces)
        probs, logits, feats = self.model_outputs(crops, representation)
        return [ModelFace(f, probs[i], None if logits is None else logits[i], None if feats is None else feats[i],
                          crops[i]) for i, f in enumerate(faces)]

    def enrol(self, crops: np.ndarray, labels, person: str = ""):
        """A person's profile (vrfer.personal.calibration.enrol) from the crops of their faces and the labels: the one
        enrolment of the API, `vrfer calibrate` and serve's calibration. Fitted on the float32 PyTorch
        representation whichever backend answers: one profile for every backend."""
        model = self.torch_model()
        _, feats = logits_and_features(model, np.ascontiguousarray(crops))
        return enrol(model, feats, labels, person=person, model_sha256=self.model_sha256())

    def probabilities(self, crops: np.ndarray, reference=OWN, profile=OWN) -> np.ndarray:
        """uint8 (N, 48, 48) crops -> the model's own probabilities (N, C), float64, calibrated by the
        profile when there is one, the wearer's (the first) read against the reference (`reference`: OWN, the
        pipeline's fixed one; None: none; the D numbers or a RunningReference) when there is one; not adjusted by a
        prior or class subset. profile: OWN (the pipeline's), None or a Profile."""
        reference = self.reference if reference is OWN else reference
        profile = self.profile if profile is OWN else profile
        need = len(crops) > 0 and (profile is not None or reference is not None)
        probs, logits, feats = self.model_outputs(crops, need)
        return self.answer(logits, feats, profile, reference) if need else probs

    def classify(self, crops: np.ndarray, post: PostProcess | None = None, reference=OWN, profile=OWN) -> np.ndarray:
        """uint8 crops -> reported probabilities (N, C): `probabilities`, adjusted by `post` (default self.post)."""
        return (post or self.post).apply(self.probabilities(crops, reference, profile))

    def run(self, image) -> tuple[list[Face], np.ndarray, np.ndarray]:
        """A photo (anything load_image takes) -> (faces, their crops, their reported probabilities), with this
        pipeline's profile and fixed reference (vrfer explain; streams go through vrfer.inference.session).
        NoFaceError when face="detect" finds no face."""
        img = load_image(image)
        faces = self.find_faces(img)
        if not faces:
            raise NoFaceError("no face found")
        crops = self.crops(img, faces)
        return faces, crops, self.classify(crops)
