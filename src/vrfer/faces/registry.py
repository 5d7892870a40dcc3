"""A place to plug in a face detector (as timm's model registry): every command, the API and serve take their
detector from here, by name, and the tracker (vrfer.faces.tracking) uses only the FaceDetector protocol below.

    from vrfer.faces import create_detector, list_detectors, register_detector
    list_detectors()                                    # ['blazeface', 'retinaface', 'retinaface-original']
    register_detector("mine", lambda threads=None, **kw: MyDetector(**kw))
    Recognizer(detector="mine")                         # a name, or the detector object itself

A new detector: its class (a file in vrfer/faces/) and one register_detector line at the end of this file; the
CLI's --detector offers every registered name (vrfer.commands._options.add_detector_arg).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from ..errors import VrferError

if TYPE_CHECKING:   # loaded where used: the CLI reads list_detectors() for --detector without numpy (fast --help)
    import numpy as np

    from .geometry import Face

DEFAULT_DETECTOR = "retinaface"


@runtime_checkable
class FaceDetector(Protocol):
    """What a face detector gives.

    Required: detect(image) -> list[Face]: every face in a uint8 gray (H, W) or BGR (H, W, 3) image, best first;
    boxes (x, y, w, h) in image pixels; landmarks (5, 2: left eye, right eye, nose, mouth corners) when it has
    them (the keypoint crop is placed from them; without them the box's square is), and Face.detector its name.
    The crop's numbers (vrfer.faces.geometry) were measured on RetinaFace's boxes: a detector whose boxes frame
    the face otherwise maps them into that geometry (as BlazeFace does), or its crops are framed off.

    Optional, found by name (getattr):
      detect_photo(image) -> list[Face]: a harder search for a whole photo (vrfer.inference.pipeline.find_faces; without
        it, detect).
      in_region(bgr, x, y, side, out_side, threshold) -> list[Face]: the faces scoring >= threshold in the
        square (x, y, side) of the image looked at scaled to out_side pixels, boxes in image pixels: the
        tracker's look around the face it follows (without it, find_in_region runs detect on that square).
    """

    def detect(self, image: np.ndarray) -> list[Face]: ...


def find_in_region(detector, bgr: np.ndarray, x: float, y: float, side: float, out_side: int,
                   threshold: float) -> list[Face]:
    """The faces in the square (x, y, side) of a BGR image, looked at scaled to out_side pixels (border replicated
    where the square leaves the image), boxes and landmarks in the image's pixels, best first: the detector's own
    in_region when it has one, else its detect on the cut-out square (any FaceDetector)."""
    own = getattr(detector, "in_region", None)
    if own is not None:
        return own(bgr, x, y, side, out_side, threshold)
    from dataclasses import replace

    import numpy as np

    from .geometry import crop_square
    roi = crop_square(bgr, x, y, side, max(32, int(out_side)))
    k = roi.shape[0] / max(1, int(round(side)))  # crop_square rounds the side
    at = np.array([x, y], np.float32)
    out = []
    for f in detector.detect(roi):
        if f.score < threshold:
            continue
        bx, by, bw, bh = f.box
        lms = None if f.landmarks is None else np.asarray(f.landmarks, np.float32) / k + at
        out.append(replace(f, box=(float(bx / k + x), float(by / k + y), float(bw / k), float(bh / k)),
                           landmarks=lms))
    return out


_FACTORIES: dict[str, Callable] = {}
_SHARED: dict[tuple, object] = {}


def register_detector(name: str, factory: Callable | None = None):
    """Register factory(threads=None, **kw) -> a FaceDetector under `name` (threads: vrfer.threads, resolved).
    Without factory, a decorator. A name registered twice is an error."""
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ValueError(f"detector name {name!r}: expected a lower-case name")

    def add(f):
        if name in _FACTORIES and _FACTORIES[name] is not f:
            raise ValueError(f"face detector {name!r} is already registered")
        _FACTORIES[name] = f
        return f
    return add if factory is None else add(factory)


def list_detectors() -> list[str]:
    """The registered detector names, sorted."""
    return sorted(_FACTORIES)


def create_detector(name: str = DEFAULT_DETECTOR, threads: int | None = None, **kw):
    """A new detector by registered name; threads: onnxruntime threads (vrfer.threads: None -> 1, 0 -> one per
    core); kw: the detector's own settings."""
    from ..threads import resolve
    if name not in _FACTORIES:
        raise VrferError(f"face detector {name!r}: expected one of {', '.join(list_detectors())}")
    return _FACTORIES[name](threads=resolve(threads), **kw)


def get_detector(name: str = DEFAULT_DETECTOR, threads: int | None = None, **kw):
    """A shared detector (create_detector once per process, name and settings): what the pipeline uses."""
    from ..threads import resolve
    key = (name, resolve(threads), tuple(sorted(kw.items())))
    if key not in _SHARED:
        _SHARED[key] = create_detector(name, threads, **kw)
    return _SHARED[key]


@register_detector("retinaface")
def _retinaface(threads: int | None = None, **kw):
    """RetinaFace MobileNet-0.25 with BlazeFace's second opinion (vrfer.faces.retinaface): the default."""
    from .retinaface import RetinaFaceDetector
    return RetinaFaceDetector(threads=threads, **kw)


@register_detector("retinaface-original")
def _retinaface_original(threads: int | None = None, **kw):
    """The same search without the photo's second look by the network fine-tuned behind headsets: vrfer's
    detector before that fine-tuning, for comparison."""
    from .retinaface import RetinaFaceDetector
    return RetinaFaceDetector(threads=threads, rescue=None, **kw)


@register_detector("blazeface")
def _blazeface(threads: int | None = None, **kw):
    """MediaPipe's BlazeFace short-range alone (vrfer.faces.blazeface): one 128x128 pass, no landmarks."""
    from .blazeface import BlazeFace
    return BlazeFace(threads=threads, **kw)
