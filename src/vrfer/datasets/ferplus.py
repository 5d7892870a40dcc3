"""FER+ reader: Microsoft's generated folder layout, or the raw fer2013.csv + fer2013new.csv pair.

Folder layout (FERPlus generate_training_data.py):
    ROOT/FER2013Train|FER2013Valid|FER2013Test/ *.png + label.csv
    label.csv row: name, "(x, y, w, h)", 10 vote counts (see labels.VOTE_COLUMNS)
Raw pair (Kaggle + Microsoft):
    ROOT/fer2013.csv     emotion, pixels (2304 space-separated values), Usage
    ROOT/fer2013new.csv  Usage, Image name, 10 vote counts; one row per fer2013.csv row
Decoded PNGs are cached under the user's cache folder, keyed by label.csv and the files' sizes and times.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VrferError
from .base import BadData, FaceSet, cache_dir
from .labels import LABEL_MODES, VOTE_COLUMNS, process_votes

SPLITS = ("train", "valid", "test")
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
SPLIT_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
VOTES = ("label", "fer2013new")
SIZE = 48
CACHE_VERSION = 1


def detect_layout(root) -> str:
    root = Path(root)
    if not root.is_dir():
        raise VrferError(f"{root}: FER+ root folder not found")
    if any((root / f).is_dir() for f in SPLIT_FOLDERS.values()):
        return "folders"  # a split folder is needed only when that split is read
    if (root / "fer2013.csv").is_file() and (root / "fer2013new.csv").is_file():
        return "raw"
    raise VrferError(f"{root}: not a FER+ root: expected the folders {', '.join(SPLIT_FOLDERS.values())} "
                     "(Microsoft's layout) or the files fer2013.csv and fer2013new.csv")


def load_ferplus(root, split: str = "train", mode: str = "majority", votes: str = "label",
                 skip_bad: bool = False, use_cache: bool = True) -> FaceSet:
    """Read one split of FER+ with Microsoft's label rules. Images: uint8 (N, 48, 48)."""
    if split not in SPLITS:
        raise VrferError(f"unknown FER+ split {split!r}; expected one of {', '.join(SPLITS)}")
    if mode not in LABEL_MODES:
        raise VrferError(f"unknown label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")
    if votes not in VOTES:
        raise VrferError(f"unknown votes source {votes!r}; expected one of {', '.join(VOTES)}")
    root = Path(root)
    layout = detect_layout(root)
    bad = BadData(skip_bad)
    if layout == "folders":
        names, vote_rows, images, ok = _read_folder_split(root, split, votes, bad, use_cache)
    else:
        if votes == "label":
            votes = "fer2013new"  # the raw pair has no label.csv: its votes are fer2013new.csv's
        names, vote_rows, images, ok = _read_raw_split(root, split, bad)
    keep, targets, dropped = [], [], {}
    for i in range(len(names)):
        if not ok[i]:
            continue
        t = process_votes(vote_rows[i], mode)
        if t is None:
            dropped["discarded by the label rule (unknown, not a face, or no agreement)"] = \
                dropped.get("discarded by the label rule (unknown, not a face, or no agreement)", 0) + 1
            continue
        keep.append(i)
        targets.append(t)
    keep = np.asarray(keep, dtype=np.int64)
    targets = np.stack(targets).astype(np.float32) if targets else np.zeros((0, 8), np.float32)
    fs = FaceSet(images[keep] if len(keep) else np.zeros((0, SIZE, SIZE), np.uint8), targets,
                 targets.argmax(1).astype(np.int64) if len(targets) else np.zeros(0, np.int64),
                 [names[i] for i in keep], source=f"ferplus:{split}:{mode}:{votes}", skipped=dict(bad.counts))
    fs.dropped = dropped
    return fs


# ---------------------------------------------------------------- folder layout

def _parse_votes(fields, where: str, bad: BadData):
    try:
        v = [float(x) for x in fields]
    except ValueError:
        bad(where, f"vote counts are not numbers: {fields}", "votes not numbers")
        return None
    if any(x < 0 or x != int(x) for x in v):
        bad(where, f"vote counts must be whole numbers >= 0: {fields}", "votes not numbers")
        return None
    return v


def _read_label_csv(path: Path, bad: BadData):
    if not path.is_file():
        raise VrferError(f"{path}: label file not found")
    rows = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            where = f"{path}, row {lineno}"
            if not row:
                continue
            if len(row) != 12:
                bad(where, f"expected 12 fields (name, face box, 10 votes), found {len(row)}: "
                    "unknown column layout", "malformed row")
                continue
            votes = _parse_votes(row[2:], where, bad)
            if votes is None:
                continue
            try:
                box = tuple(int(x) for x in row[1].strip().strip("()").split(","))
                if len(box) != 4:
                    raise ValueError
            except ValueError:
                bad(where, f"face box {row[1]!r} is not '(x, y, w, h)'", "malformed row")
                continue
            rows.append((row[0], box, votes, lineno))
    return rows


def _decode_png(path: Path):
    """-> (uint8 HxW array, None) or (None, reason)."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        return None, "image file missing"
    except Exception as e:  # PIL raises many types for corrupt files
        return None, f"cannot decode image ({type(e).__name__}: {e})"
    return arr, None


def _folder_key(folder: Path, label_csv: Path) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{folder.resolve()}".encode())
    h.update(label_csv.read_bytes())
    with os.scandir(folder) as it:
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in it if e.is_file())
    h.update(repr(entries).encode())
    return h.hexdigest()[:24]


def _read_folder_split(root: Path, split: str, votes: str, bad: BadData, use_cache: bool):
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise VrferError(f"{folder}: folder of the FER+ {split} split not found")
    label_csv = folder / "label.csv"
    rows = _read_label_csv(label_csv, bad)
    images, errors = _decode_folder_cached(folder, label_csv, rows, use_cache)
    names, vote_rows, ok = [], [], np.zeros(len(rows), bool)
    if votes == "fer2013new":
        new_votes = _fer2013new_votes(root / "fer2013new.csv", SPLIT_USAGE[split], bad)
    for i, (name, box, v, lineno) in enumerate(rows):
        where = f"{label_csv}, row {lineno} ({name})"
        names.append(name)
        if votes == "fer2013new":
            if name not in new_votes:
                bad(where, f"{name} has no row with Usage={SPLIT_USAGE[split]} in fer2013new.csv",
                    "no votes in fer2013new.csv")
                vote_rows.append(None)
                continue
            v = new_votes[name]
        vote_rows.append(v)
        if errors[i]:
            bad(f"{folder / name} (label.csv row {lineno})", errors[i],
                errors[i].split(" (")[0].split(":")[0])
            continue
        ok[i] = True
    return names, vote_rows, images, ok


def _decode_folder_cached(folder: Path, label_csv: Path, rows, use_cache: bool):
    """Decode every listed image once; later reads come from an .npz in the user's cache folder."""
    key = _folder_key(folder, label_csv) if use_cache else None
    cache = cache_dir() / f"ferplus-{folder.name}-{key}.npz" if key else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                images = z["images"]
                errors = json.loads(str(z["errors"]))
            if len(images) == len(rows):
                return images, errors
        except Exception:
            pass  # unreadable cache: rebuild it
    paths = [folder / r[0] for r in rows]
    with ThreadPoolExecutor(max_workers=4) as ex:
        decoded = list(ex.map(_decode_png, paths))
    images = np.zeros((len(rows), SIZE, SIZE), np.uint8)
    errors = []
    for i, ((arr, err), r) in enumerate(zip(decoded, rows)):
        if err is None:
            x, y, w, h = r[1]
            if arr.shape != (SIZE, SIZE):
                err = f"image is {arr.shape[1]}x{arr.shape[0]}, expected {SIZE}x{SIZE}"
            elif (x, y, w, h) != (0, 0, SIZE, SIZE):
                crop = arr[max(y, 0):y + h, max(x, 0):x + w]
                if crop.size == 0:
                    err = f"face box {r[1]} lies outside the image"
                else:
                    arr = np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BILINEAR))
        if err is None:
            images[i] = arr
        errors.append(err or "")
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, images=images, errors=np.array(json.dumps(errors)))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only cache folder only costs speed
    return images, errors


def _fer2013new_votes(path: Path, usage: str, bad: BadData) -> dict:
    if not path.is_file():
        raise VrferError(f"{path}: fer2013new.csv not found (needed for --votes fer2013new)")
    out = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["Usage", "Image name"] or len(header) != 12:
            raise VrferError(f"{path}: unknown column layout {header}; expected Usage, Image name, "
                             f"{', '.join(VOTE_COLUMNS)}")
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 12:
                bad(f"{path}, row {lineno}", f"expected 12 fields, found {len(row)}", "malformed row")
                continue
            if row[0] != usage or not row[1]:
                continue
            v = _parse_votes(row[2:], f"{path}, row {lineno}", bad)
            if v is not None:
                out[row[1]] = v  # a duplicated name keeps its last row, as Microsoft's generator writes it
    return out


# ---------------------------------------------------------------- raw fer2013.csv + fer2013new.csv

def _read_raw_split(root: Path, split: str, bad: BadData):
    usage = SPLIT_USAGE[split]
    old_path, new_path = root / "fer2013.csv", root / "fer2013new.csv"
    with open(old_path, newline="") as f_old, open(new_path, newline="") as f_new:
        r_old, r_new = csv.reader(f_old), csv.reader(f_new)
        h_old, h_new = next(r_old, None), next(r_new, None)
        if h_old is None or [h.strip() for h in h_old] != ["emotion", "pixels", "Usage"]:
            raise VrferError(f"{old_path}: unknown column layout {h_old}; expected emotion, pixels, Usage")
        if h_new is None or [h.strip() for h in h_new[:2]] != ["Usage", "Image name"] or len(h_new) != 12:
            raise VrferError(f"{new_path}: unknown column layout {h_new}; expected Usage, Image name, "
                             f"{', '.join(VOTE_COLUMNS)}")
        names, vote_rows, pixels = [], [], []
        lineno = 1
        for row_old in r_old:
            lineno += 1
            row_new = next(r_new, None)
            if row_new is None:
                raise VrferError(f"{new_path}: has fewer rows than fer2013.csv (ends before row {lineno})")
            if len(row_old) != 3:
                bad(f"{old_path}, row {lineno}", f"expected 3 fields, found {len(row_old)}", "malformed row")
                continue
            if len(row_new) != 12:
                bad(f"{new_path}, row {lineno}", f"expected 12 fields, found {len(row_new)}", "malformed row")
                continue
            if row_old[2] != usage:
                continue
            if row_new[0] != row_old[2]:
                raise VrferError(f"{new_path}, row {lineno}: Usage {row_new[0]!r} differs from fer2013.csv's "
                                 f"{row_old[2]!r}: the two files are not row-aligned")
            if not row_new[1]:
                continue  # no FER+ image for this row (Microsoft drops it: 10 NF votes)
            v = _parse_votes(row_new[2:], f"{new_path}, row {lineno}", bad)
            if v is None:
                continue
            try:
                px = np.array(row_old[1].split(), dtype=np.int64)
            except ValueError:
                bad(f"{old_path}, row {lineno}", "pixels are not numbers", "bad pixels")
                continue
            if px.size != SIZE * SIZE or px.min(initial=0) < 0 or px.max(initial=0) > 255:
                bad(f"{old_path}, row {lineno}", f"pixels: expected {SIZE * SIZE} values in 0-255, "
                    f"found {px.size}", "bad pixels")
                continue
            names.append(row_new[1])
            vote_rows.append(v)
            pixels.append(px.astype(np.uint8).reshape(SIZE, SIZE))
    images = np.stack(pixels) if pixels else np.zeros((0, SIZE, SIZE), np.uint8)
    return names, vote_rows, images, np.ones(len(names), bool)


def present_splits(root) -> list[str]:
    """The splits this FER+ root holds (all three for the raw CSV pair)."""
    root = Path(root)
    if detect_layout(root) == "raw":
        return list(SPLITS)
    return [s for s in SPLITS if (root / SPLIT_FOLDERS[s]).is_dir()]


def summary(root, mode: str = "majority", votes: str = "label", skip_bad: bool = False,
            splits=None) -> dict:
    """Counts per split and class, shaped as `vrfer data summary --json` prints them.
    splits: the splits to read (default: those present under root)."""
    out = {}
    for split in splits or present_splits(root):
        fs = load_ferplus(root, split, mode, votes, skip_bad)
        out[split] = {"count": len(fs), "classes": fs.class_counts()}
        if fs.skipped:
            out[split]["skipped"] = fs.skipped
        if fs.dropped:
            out[split]["dropped"] = fs.dropped
    return out
