"""`vrfer predict`: expressions of headset wearers in photos, folders, videos and webcams.

Output (stdout): one line per face, as a readable table (default), JSON lines (--json) or CSV (--csv).
Problems with single items (unreadable file, no face, video that cannot be opened...) are one line each
on stderr, and the rest of the batch still runs. Exit code: 0 all items ok, 1 some items failed,
2 usage error (bad option, unknown model).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..errors import VrferError
from ..results import DECIMALS
from ..threads import add_threads_option
from ._options import (
    add_backend_arg,
    add_detector_arg,
    add_face_arg,
    add_model_arg,
    add_postprocess_args,
    add_profile_arg,
    add_reference_arg,
    item_error,
    model_source,
    reference_setting,
)

_SHORT = {"neutral": "neu", "happiness": "hap", "surprise": "sur", "sadness": "sad", "anger": "ang",
          "disgust": "dis", "fear": "fea", "contempt": "con"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="expressions in photos, folders, videos or a webcam",
        description="Facial expressions of people wearing a VR headset, from the lower half of the face. "
                    "PATH: image files, folders (searched recursively), video files, or cam:N for a "
                    "webcam. Without PATH: the bundled sample images.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image files, folders, video files or cam:N (default: the bundled samples)")
    add_model_arg(p, onnx=True)
    add_face_arg(p)
    add_detector_arg(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON lines, one object per face")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row, one row per face")
    p.add_argument("--out", metavar="DIR", help="write photos annotated with box, label and the square the model "
                   "read to DIR (photos only, not video frames; default: none written)")
    p.add_argument("--smooth", type=float, default=None, metavar="ALPHA",
                   help="video/webcam: exponential moving average of the probabilities, "
                        "s = ALPHA*p + (1-ALPHA)*s_prev: ALPHA in (0, 1] is the weight of the newest frame, "
                        "as serve's alpha (default: off; 0.2: about the last 5 frames); adds smoothed and "
                        "smoothed_label, as serve's events: label and score stay this frame's")
    add_backend_arg(p)
    add_postprocess_args(p)
    add_profile_arg(p)
    add_reference_arg(p)
    p.add_argument("--camera", type=int, action="append", metavar="N", help="webcam index (same as PATH cam:N)")
    p.add_argument("--samples", action="store_true", help="run on the bundled sample images")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="stop each video or webcam after N frames (default: every frame of a video; a webcam "
                        "until Ctrl-C)")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar for video files")
    p.set_defaults(fn=run)


# the square the model read (vrfer.results: `square`), last so that the columns before keep their places
SQUARE_COLUMNS = ("square_x", "square_y", "square_side")


class _Writer:
    """One face a line: vrfer.results.FacePrediction as a table, its to_dict as JSON, or the same values as CSV."""

    def __init__(self, mode: str, classes, smoothing: bool, stream=None):
        self.mode, self.classes, self.smoothing = mode, list(classes), smoothing
        self.stream = stream or sys.stdout
        self.csv = None
        self.header_done = False
        if mode == "csv":
            self.csv = csv.writer(self.stream, lineterminator="\n")
            head = ["source", "frame", "x", "y", "w", "h", "label", "score"] + self.classes
            if smoothing:
                head += [f"smoothed_{c}" for c in self.classes] + ["smoothed_label"]
            self.csv.writerow(head + ["held"] + list(SQUARE_COLUMNS))

    def write(self, pred, size: tuple[int, int] | None = None) -> None:
        """size: the image's (width, height), to mark a box that reaches outside it in the table."""
        if self.mode == "json":
            print(json.dumps(pred.to_dict()), file=self.stream)
        elif self.mode == "csv":
            num = f"{{:.{DECIMALS}f}}".format       # the decimals of the JSON (vrfer.results)
            row = [pred.source, "" if pred.frame is None else pred.frame, *pred.box, pred.label,
                   num(pred.score)] + [num(pred.probs[c]) for c in self.classes]
            if self.smoothing:
                sm = pred.smoothed or pred.probs
                row += [num(sm[c]) for c in self.classes] + [pred.smoothed_label or pred.label]
            self.csv.writerow(row + [int(pred.held)] + (list(pred.square) if pred.square else ["", "", ""]))
        else:
            if not self.header_done:
                print(_TABLE_HEADER, file=self.stream)
                self.header_done = True
            where = pred.source + (f" #{pred.frame}" if pred.frame is not None else "")
            x, y, w, h = pred.box
            probs = " ".join(f"{_SHORT.get(c, c[:3])} {pred.probs[c]:.2f}" for c in self.classes)
            outside = size is not None and (x < 0 or y < 0 or x + w > size[0] or y + h > size[1])
            smoothed = "" if pred.smoothed is None else \
                f"  smoothed {pred.smoothed_label} {pred.smoothed[pred.smoothed_label]:.2f}"
            held = "  held" if pred.held else ""
            print(f"{where}  [{x},{y},{w},{h}]{'*' if outside else ''}  {pred.label:<9} {pred.score:.2f}  ({probs})"
                  f"{smoothed}{held}", file=self.stream)
        self.stream.flush()


_TABLE_HEADER = ("# source [#frame]  [face box x,y,w,h; * reaches outside the image, the crop is padded]  "
                 "expression score  (the 8 probabilities)  [smoothed: expression score, with --smooth]  "
                 "[held: face not seen in this video frame, its last box kept]")


def _out_path(out_dir: Path, item) -> Path:
    rel = Path(item.rel or Path(str(item.path)).name)
    if rel.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        rel = rel.with_suffix(".png")
    return out_dir / rel


def _out_paths(out_dir: Path, items, option: str) -> dict:
    """id(item) -> where its annotated copy goes: one file per photo (two photos named x.png from two folders
    were written to one x.png, the last one kept: the second is x_2.png), never over an input photo (--out
    naming the input folder overwrote the photos with their annotated copies): VrferError before any work."""
    inputs = {Path(str(it.path)).resolve() for it in items if it.kind == "image"}
    targets, taken = {}, set()
    for it in items:
        if it.kind != "image":
            continue
        p, n = _out_path(out_dir, it), 2
        while p in taken:
            p, n = _out_path(out_dir, it).with_stem(f"{_out_path(out_dir, it).stem}_{n}"), n + 1
        if p.resolve() in inputs:
            raise VrferError(f"--out {option}: the annotated copy of {it.name} would be written over the input photo "
                             f"{p}: choose another folder")
        taken.add(p)
        targets[id(it)] = p
    return targets


def run(a) -> int:
    from ..outputs import output_dir
    from ..recognizer import Recognizer
    from ..inputs import Video, expand_inputs, samples_path

    paths = list(a.paths)
    for cam in a.camera or []:
        paths.append(f"cam:{cam}")
    if a.max_frames is not None and a.max_frames < 1:
        raise VrferError("--max-frames must be at least 1")
    items, bad = expand_inputs(paths)
    if a.samples or not paths:
        if not a.samples:
            print(f"vrfer: no PATH given: running on the bundled samples ({samples_path()})", file=sys.stderr)
        samples, _ = expand_inputs([str(samples_path())])
        for it in samples:  # the samples vrfer adds show as samples/NAME; a path the user gave shows as given
            it.name = f"samples/{Path(str(it.path)).name}"
        items += samples

    source = model_source(a, a.backend)
    rec = Recognizer(model=source, face=a.face, backend=a.backend, alpha=a.smooth, threads=a.threads,
                     prior=a.prior, prior_tau=a.prior_tau, classes=a.classes, profile=a.profile,
                     reference=reference_setting(a, source), detector=a.detector)
    mode = "json" if a.json else "csv" if a.csv else "table"
    writer = _Writer(mode, rec.classes, rec.alpha is not None)
    out_dir, targets = None, {}
    if a.out and any(it.kind == "image" for it in items):
        out_dir = output_dir(a.out)          # only when there is a photo to annotate
        targets = _out_paths(out_dir, items, a.out)
    if a.out:
        for it in items:
            if it.kind != "image":
                item_error(it.name, "note: --out annotates photos only; no annotated copy of this video or webcam")

    failed = len(bad)
    for name, msg in bad:
        item_error(name, msg)
    for item in items:
        try:
            if item.kind == "image":
                img, preds = photo_predictions(rec, item)
                for p in preds:
                    writer.write(p, (img.shape[1], img.shape[0]))
                if out_dir is not None:
                    _write_annotated(rec, img, preds, targets[id(item)])
            else:
                video = Video(item.path)          # opened once: its header (frame count, size) and frames
                for _, preds in video_predictions(rec, item, a.max_frames, progress=not a.no_progress, video=video):
                    for p in preds or []:
                        writer.write(p, video.size)
        except VrferError as e:
            failed += 1
            item_error(item.name, str(e))
        except KeyboardInterrupt:
            item_error(item.name, "interrupted")
            return 130
        except BrokenPipeError:  # the reader went away (e.g. `| head`): vrfer.cli ends quietly, exit 0
            raise
        except MemoryError:
            failed += 1
            item_error(item.name, "out of memory while reading this item")
        except Exception as e:  # a problem with one item must not end the batch in a traceback
            failed += 1
            item_error(item.name, f"failed: {type(e).__name__}: {e}")
    return 1 if failed else 0


def photo_predictions(rec, item):
    """The path of one photo (`vrfer predict`'s and `vrfer batch`'s): (the loaded image, its predictions); a photo
    is a stream of its own (no smoothing or tracking carried over). NoFaceError when no face is found."""
    from ..inference.images import load_image
    rec.reset()
    img = load_image(item.path)
    return img, rec.predict(img, source=item.name)


def video_predictions(rec, item, max_frames: int | None = None, progress: bool = False, note=item_error,
                      video=None):
    """The per-frame path of one video file or webcam (`vrfer predict`'s and `vrfer batch`'s): (frame index,
    predictions or None where no face was found), the face tracked and smoothed by `rec` (Recognizer.video).
    After the last frame: VrferError when no frame had a face, or when a video file ended before the frame count
    its header announces (every frame was asked for); note(name, message) for frames without a face. video: the
    item's vrfer.inputs.Video when the caller has opened it already (else it is opened here, once)."""
    from ..inputs import Video
    frames = seen = 0
    video = video or Video(item.path)
    header = video.frame_count
    for i, preds in rec.video(video, max_frames=max_frames, name=item.name, progress=progress):
        frames += 1
        seen += bool(preds)
        yield i, preds
    if seen == 0:
        raise VrferError(f"no face found in any of {frames} frames")
    if seen < frames:
        note(item.name, f"note: no face in {frames - seen} of {frames} frames")
    expected = min(header, max_frames or header)
    if item.kind == "video" and frames < expected:
        raise VrferError(f"video ended after {frames} of the {header} frames its header announces "
                         "(truncated or damaged file); the frames read are above")


def _write_annotated(rec, img, preds, path: Path) -> None:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), rec.annotate(img, preds))
    if not ok:
        raise VrferError(f"cannot write the annotated image {path}")
