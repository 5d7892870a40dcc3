"""AffectNet reader: the official manually annotated lists (Mollahosseini et al. 2019).

Layout, as the official archives unpack (either place for the lists works):
    ROOT/training.csv, ROOT/validation.csv
        or ROOT/Manually_Annotated_file_lists/training.csv, .../validation.csv
    ROOT/Manually_Annotated_Images/<subDirectory_filePath>
        also found: ROOT/Manually_Annotated/Manually_Annotated_Images,
        ROOT/Manually_Annotated_compressed/Manually_Annotated_Images, or the images straight under ROOT;
        images_dir= names the folder explicitly.
List columns:
    subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence, arousal
    (facial_landmarks: 68 points as one ';'-separated string; landmarks, valence and arousal are not used).
    The official validation.csv ships without the header row: a file whose first row is data is accepted;
    a first row that is neither the header nor data is an unknown column layout (an error).
Expressions: 0 Neutral, 1 Happiness, 2 Sadness, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt are kept
    and mapped onto vrfer.classes.CLASSES; 8 None, 9 Uncertain, 10 No-Face are dropped and counted.

Training split: at most `cap` images per class (default 15,000, as Mollahosseini et al. and the paper: the
    published counts give exactly 88,021), chosen per class by a seeded random permutation of the class's
    rows. The choice is made on the list alone, before any image is opened (select_rows / count_affectnet
    give it without images). With skip_bad, an image that cannot be used is replaced by the class's next
    row in the same seeded order, so a class keeps its cap while it has rows left.
Validation split: the 500-per-class set as published, never capped.

Each image: cropped by its face box (clipped to the image), converted to grayscale, resized to size x size
    (default 48, FER+'s size, so the two join with base.concat), uint8. Large JPEGs are decoded at 1/2-1/8
    scale (libjpeg DCT scaling) when the face box stays at least twice the output size.
Targets: AffectNet has one hard label per image, so every label_mode yields a one-hot target (a one-hot is
    also a valid distribution for probability/crossentropy and a valid multi-hot for multi_target).
Cache: decoded arrays go to cache_dir(), one file per (lists, images folder, split, cap, seed, size); a
    cached file is used only while the list's content hash and the size and mtime of every image it read
    are unchanged, otherwise the split is decoded again.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from ..errors import VrferError
from .base import BadData, FaceSet
from .affectnet_images import cache_file, decode_faces, find_images, load_cache, save_cache
from .labels import LABEL_MODES

HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
          "expression", "valence", "arousal")
EXPRESSIONS = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
               "None", "Uncertain", "No-Face")
# AffectNet expression id -> index in vrfer.classes.CLASSES (FER+'s order)
AFFECTNET_TO_CLASS = {0: CLASS_INDEX["neutral"], 1: CLASS_INDEX["happiness"], 2: CLASS_INDEX["sadness"],
                      3: CLASS_INDEX["surprise"], 4: CLASS_INDEX["fear"], 5: CLASS_INDEX["disgust"],
                      6: CLASS_INDEX["anger"], 7: CLASS_INDEX["contempt"]}
SPLITS = ("train", "validation")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation"}
LIST_FILES = {"train": "training.csv", "validation": "validation.csv"}
LIST_FOLDERS = (".", "Manually_Annotated_file_lists")
DEFAULT_CAP = 15000
SIZE = 48
class Row(NamedTuple):
    line: int           # line number in the list file (the header is line 1 when present)
    path: str           # subDirectory_filePath
    x: int
    y: int
    w: int
    h: int
    expression: int     # AffectNet id 0-7


# ---------------------------------------------------------------- the list alone

@dataclass
class Selection:
    """The rows a split uses, chosen on the list alone (no image opened).

    order[e]: the valid rows of AffectNet expression e; for a capped class in its seeded random order,
    otherwise in list order. taken[e]: how many of them (the first ones) are selected.
    """

    csv_path: Path
    split: str
    cap: int | None
    seed: int
    csv_sha: str
    order: dict[int, list[Row]]
    taken: dict[int, int]
    by_expression: dict[str, int] = field(default_factory=dict)  # rows dropped for expression 8-10
    skipped: dict[str, int] = field(default_factory=dict)        # bad rows (skip_bad)

    def rows(self) -> list[Row]:
        """The selected rows, in list order."""
        return sorted((r for e, rs in self.order.items() for r in rs[: self.taken[e]]), key=lambda r: r.line)

    def __len__(self) -> int:
        return sum(self.taken.values())

    def class_counts(self) -> dict[str, int]:
        counts = [0] * NUM_CLASSES
        for e, n in self.taken.items():
            counts[AFFECTNET_TO_CLASS[e]] += n
        return {c: k for c, k in zip(CLASSES, counts)}

    @property
    def dropped(self) -> dict[str, int]:
        out = dict(self.by_expression)
        over = sum(len(rs) - self.taken[e] for e, rs in self.order.items())
        if over:
            out[f"over the per-class cap of {self.cap}"] = over
        return out


def find_list(root, split: str) -> Path:
    """ROOT/training.csv or ROOT/Manually_Annotated_file_lists/training.csv (validation.csv likewise)."""
    split = _split(split)
    root = Path(root)
    if not root.is_dir():
        raise VrferError(f"{root}: AffectNet root folder not found")
    for folder in LIST_FOLDERS:
        p = root / folder / LIST_FILES[split]
        if p.is_file():
            return p
    raise VrferError(f"{root}: AffectNet list {LIST_FILES[split]} not found (looked in {root} and "
                     f"{root / 'Manually_Annotated_file_lists'})")


def select_rows(csv_path, split: str = "train", cap: int | None = DEFAULT_CAP, seed: int = 0,
                skip_bad: bool = False) -> Selection:
    """Read one official list and choose the split's rows (the training cap applied), without images.

    cap: per-class maximum for the training split; None or 0 = no cap. Validation is never capped.
    """
    split = _split(split)
    cap = _check_cap(cap)
    csv_path = Path(csv_path)
    bad = BadData(skip_bad)
    rows, by_expression, sha = _read_list(csv_path, bad)
    if split == "validation":
        cap = None
    by_class: dict[int, list[Row]] = {e: [] for e in range(8)}
    for r in rows:
        by_class[r.expression].append(r)
    order, taken = {}, {}
    for e, rs in by_class.items():
        if cap is not None and len(rs) > cap:
            perm = np.random.default_rng([seed % (1 << 64), e]).permutation(len(rs))
            rs = [rs[i] for i in perm]
        order[e] = rs
        taken[e] = len(rs) if cap is None else min(cap, len(rs))
    return Selection(csv_path, split, cap, seed, sha, order, taken, by_expression, dict(bad.counts))


def count_affectnet(path, split: str = "train", cap: int | None = DEFAULT_CAP, seed: int = 0,
                    skip_bad: bool = False) -> dict:
    """Counts the reader would load, from the list alone: {"count", "classes", "dropped"[, "skipped"]}.

    path: the AffectNet root folder, or the list file itself. Equals the loaded counts when every
    selected image is readable.
    """
    p = Path(path)
    sel = select_rows(p if p.is_file() else find_list(p, split), split, cap, seed, skip_bad)
    out = {"count": len(sel), "classes": sel.class_counts()}
    if sel.skipped:
        out["skipped"] = sel.skipped
    if sel.dropped:
        out["dropped"] = sel.dropped
    return out


def _split(split: str) -> str:
    if split not in SPLIT_ALIASES:
        raise VrferError(f"unknown AffectNet split {split!r}; expected train or validation")
    return SPLIT_ALIASES[split]


def _check_cap(cap):
    if cap is None or cap == 0:
        return None
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 0:
        raise VrferError(f"AffectNet per-class cap must be a whole number >= 1 (0 or none = no cap), not {cap!r}")
    return int(cap)


def _number(text: str, whole: bool = False) -> int:
    """'12', ' 12', '12.0' -> 12; another decimal is rounded (a ValueError if whole); else ValueError."""
    try:
        return int(text)
    except ValueError:
        v = float(text)
        if not math.isfinite(v) or (whole and v != int(v)):
            raise ValueError(text) from None
        return int(round(v))


def _looks_like_data(row) -> bool:
    if len(row) != len(HEADER):
        return False
    try:
        for i in (1, 2, 3, 4, 6):
            _number(row[i], whole=i == 6)
    except ValueError:
        return False
    return True


def _hashed_lines(path: Path, h):
    """The file's lines as text for csv.reader, hashing the bytes on the way (one read for both)."""
    with open(path, "rb") as f:
        first = True
        for raw in f:
            h.update(raw)
            if first:
                first = False
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
            yield raw.decode("utf-8")


def _read_list(path: Path, bad: BadData):
    """-> (valid rows with expression 0-7, {drop reason: count} for 8-10, sha256 of the file)."""
    if not path.is_file():
        raise VrferError(f"{path}: AffectNet list not found")
    h = hashlib.sha256()
    rows: list[Row] = []
    dropped: dict[int, int] = {}
    ncol = len(HEADER)
    reader = csv.reader(_hashed_lines(path, h))
    try:
        first = True
        for row in reader:
            line = reader.line_num
            if first:
                first = False
                if [c.strip() for c in row] == list(HEADER):
                    continue
                if not _looks_like_data(row):
                    raise VrferError(f"{path}: unknown column layout: first row {row[:len(HEADER) + 1]}; expected "
                                     f"the columns {', '.join(HEADER)} (the header row may be absent)")
            if len(row) != ncol:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                bad(f"{path}, row {line}", f"expected {len(HEADER)} fields ({', '.join(HEADER)}), found {len(row)}",
                    "malformed row")
                continue
            try:
                expr = int(row[6])
            except ValueError:
                try:
                    expr = _number(row[6], whole=True)
                except ValueError:
                    bad(f"{path}, row {line}", f"expression {row[6]!r} is not a whole number",
                        "expression not a number")
                    continue
            if not 0 <= expr <= 10:
                bad(f"{path}, row {line}", f"expression {expr} is not an AffectNet id (0-10)", "unknown expression")
                continue
            if expr >= 8:
                dropped[expr] = dropped.get(expr, 0) + 1
                continue
            name = row[0].strip()
            if not name:
                bad(f"{path}, row {line}", "subDirectory_filePath is empty", "malformed row")
                continue
            try:
                x, y, w, hh = int(row[1]), int(row[2]), int(row[3]), int(row[4])
            except ValueError:
                try:
                    x, y, w, hh = (_number(v) for v in row[1:5])
                except ValueError:
                    bad(f"{path}, row {line}", f"face box {row[1:5]} is not numbers "
                        "(face_x, face_y, face_width, face_height)", "face box not numbers")
                    continue
            if w <= 0 or hh <= 0:
                bad(f"{path}, row {line}", f"face box width {w} / height {hh} must be > 0", "bad face box")
                continue
            rows.append(Row(line, name, x, y, w, hh, expr))
    except UnicodeDecodeError:
        raise VrferError(f"{path}, row {reader.line_num + 1}: not UTF-8 text (is this an AffectNet list?)") from None
    except csv.Error as e:
        raise VrferError(f"{path}, row {reader.line_num}: {e}") from None
    if first:
        raise VrferError(f"{path}: empty file; expected the columns {', '.join(HEADER)}")
    reasons = {f"expression {e} ({EXPRESSIONS[e]})": dropped[e] for e in sorted(dropped)}
    return rows, reasons, h.hexdigest()


# ---------------------------------------------------------------- the reader

def load_affectnet(root, split: str = "train", cap: int | None = DEFAULT_CAP, seed: int = 0, size: int = SIZE,
                   skip_bad: bool = False, label_mode: str = "majority", images_dir=None,
                   use_cache: bool = True, workers: int | None = None) -> FaceSet:
    """Read one split of AffectNet's manually annotated set. Images: uint8 (N, size, size) grayscale face crops.

    split: "train" (capped per class) or "validation" (as published; "valid" also accepted).
    label_mode: any of labels.LABEL_MODES; AffectNet's labels are hard, so every mode gives one-hot targets.
    The returned FaceSet has .dropped (expression 8-10 and over-the-cap counts) besides .skipped.
    """
    split = _split(split)
    if label_mode not in LABEL_MODES:
        raise VrferError(f"unknown label mode {label_mode!r}; expected one of {', '.join(LABEL_MODES)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise VrferError(f"AffectNet crop size must be a whole number >= 1, not {size!r}")
    size = int(size)
    csv_path = find_list(root, split)
    bad = BadData(skip_bad)
    sel = select_rows(csv_path, split, cap, seed, skip_bad)
    bad.counts.update(sel.skipped)
    img_root = find_images(root, sel.rows(), images_dir)
    cache = cache_file(sel, img_root, size) if use_cache else None
    got = load_cache(cache, sel, img_root, size, workers) if cache is not None else None
    if got is None:
        got = decode_faces(sel, img_root, size, skip_bad, workers)
        if cache is not None and (skip_bad or not got[2]):
            save_cache(cache, sel, size, *got)
    kept, images, failures, attempted = got
    for r, why, kind in failures:
        bad(f"{sel.csv_path}, row {r.line} ({img_root / r.path})", why, kind)
    # the cache may come from a skip_bad run: recompute the classes' final takes from what was attempted
    taken = {e: 0 for e in sel.order}
    for r, _ in attempted:
        taken[r.expression] += 1
    dropped = dict(sel.by_expression)
    over = sum(len(rs) - taken[e] for e, rs in sel.order.items())
    if over:
        dropped[f"over the per-class cap of {sel.cap}"] = over
    labels = np.array([AFFECTNET_TO_CLASS[r.expression] for r in kept], dtype=np.int64)
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels] if len(labels) else np.zeros((0, NUM_CLASSES), np.float32)
    source = f"affectnet:{split}" + (f":cap{sel.cap}:seed{seed}" if sel.cap is not None else "")
    fs = FaceSet(images, targets, labels, [r.path for r in kept], source=source, skipped=dict(bad.counts))
    fs.dropped = dropped
    return fs


def summary(root, cap: int | None = DEFAULT_CAP, seed: int = 0, skip_bad: bool = False, splits=None) -> dict:
    """Counts per split and class of what the reader loads, shaped as `vrfer data summary --json` prints them.

    Decodes the images (cached for later reads); count_affectnet gives the counts from the lists alone.
    """
    out = {}
    for key, split in (("train", "train"), ("valid", "validation")):
        if splits and key not in splits:
            continue
        fs = load_affectnet(root, split, cap=cap, seed=seed, skip_bad=skip_bad)
        out[key] = {"count": len(fs), "classes": fs.class_counts()}
        if fs.skipped:
            out[key]["skipped"] = fs.skipped
        if fs.dropped:
            out[key]["dropped"] = fs.dropped
    return out
