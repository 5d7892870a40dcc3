"""Any labelled folder of face images: ROOT/labels.csv naming each image and its expression.

labels.csv has a header row with a `file` column (path relative to ROOT, or to ROOT/images) and either
`label` (class index in vrfer's order, vrfer.classes.CLASSES) or `label_name` (a class name, e.g.
"fear"; "happy"/"angry"/... common spellings are accepted), or both (they must agree). Other columns
are ignored, except `subject` (the person) and `session` (one sitting of that person), which adaptation and
calibration need (vrfer adapt, vrfer evaluate --adapt / --enrol). The CK+48 copy in ../shared/data/ckplus48 is the first such folder.

Images may be any size, 8/16-bit, gray or colour: they are read and cropped the way `vrfer predict`
reads and crops them (vrfer.recognizer), so a folder evaluation gives the answers predict gives.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..classes import CLASSES, class_name
from ..errors import VrferError
from .base import BadData



@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int
    where: str          # "labels.csv row N": named in every message about this item
    subject: str = ""   # the `subject` column (a person), where labels.csv has one
    session: str = ""   # the `session` column (one sitting of that person), where labels.csv has one


def _label(row: dict, where: str) -> int:
    idx, name = (row.get("label") or "").strip(), (row.get("label_name") or "").strip().lower()
    by_idx = by_name = None
    if idx:
        try:
            by_idx = int(idx)
        except ValueError:
            raise VrferError(f"{where}: label {idx!r} is not a class index 0-{len(CLASSES) - 1}") from None
        if not 0 <= by_idx < len(CLASSES):
            raise VrferError(f"{where}: label {by_idx} is not a class index 0-{len(CLASSES) - 1}")
    if name:
        name = class_name(name)
        if name not in CLASSES:
            raise VrferError(f"{where}: label_name {name!r} is not one of {', '.join(CLASSES)}")
        by_name = CLASSES.index(name)
    if by_idx is None and by_name is None:
        raise VrferError(f"{where}: no label (fill `label` or `label_name`)")
    if by_idx is not None and by_name is not None and by_idx != by_name:
        raise VrferError(f"{where}: label {by_idx} ({CLASSES[by_idx]}) disagrees with label_name {name!r}")
    return by_idx if by_idx is not None else by_name


def read_labels(root, skip_bad: bool = False) -> tuple[list[LabelledImage], BadData]:
    """The images listed in ROOT/labels.csv with their class index. A bad row stops the read with one
    line naming it, unless skip_bad (then bad rows are counted in the returned BadData's counts)."""
    if str(root) == "":         # Path("") is the working folder: an unset shell variable must not read it
        raise VrferError("labelled folder '': empty path")
    root = Path(root)
    if not root.is_dir():
        raise VrferError(f"{root}: a file, not a folder (a labelled folder holds labels.csv and its images)"
                         if root.exists() else f"{root}: folder not found")
    path = root / "labels.csv"
    if not path.is_file():
        raise VrferError(f"{path}: not found (a labelled folder needs labels.csv with columns file and "
                         "label or label_name)")
    bad = BadData(skip_bad)
    items: list[LabelledImage] = []
    seen: dict[Path, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            if "file" not in cols or not ({"label", "label_name"} & set(cols)):
                raise VrferError(f"{path}: header {','.join(cols) or '(empty)'} lacks `file` and `label` or "
                                 "`label_name`")
            twice = sorted({c for c in cols if cols.count(c) > 1})
            if twice:                  # csv.DictReader would keep the last one silently
                raise VrferError(f"{path}: header names column {twice[0]!r} twice")
            reader.fieldnames = cols
            for n, row in enumerate(reader, start=2):  # row 1 is the header
                where = f"{path} row {n}"
                if None in row:
                    bad(where, f"{len(cols) + len(row[None])} fields, the header has {len(cols)}", "bad_row")
                    continue
                if any(v is None for v in row.values()):   # csv fills a short row's missing fields with None
                    bad(where, f"{sum(v is not None for v in row.values())} fields, the header has {len(cols)}",
                        "bad_row")
                    continue
                try:
                    label = _label(row, where)
                except VrferError as e:
                    bad(where, str(e).split(": ", 1)[1] if str(e).startswith(where) else str(e), "bad_label")
                    continue
                name = (row.get("file") or "").strip()
                if not name:
                    bad(where, "empty `file`", "bad_row")
                    continue
                img = root / name
                if not img.is_file() and (root / "images" / name).is_file():
                    img = root / "images" / name
                if not img.is_file():
                    bad(where, f"image {name!r} not found", "missing_image")
                    continue
                key = img.resolve()
                if key in seen:        # counted twice, it would weigh twice in every figure
                    bad(where, f"image {name!r} is already listed in {seen[key]}", "duplicate")
                    continue
                seen[key] = f"row {n}"
                items.append(LabelledImage(img, label, where, (row.get("subject") or "").strip(),
                                           (row.get("session") or "").strip()))
    except UnicodeDecodeError:
        raise VrferError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as e:          # a field over csv's limit (128 KB), a broken quote at the end...
        raise VrferError(f"{path} row {reader.line_num + 1}: not a CSV row ({e})") from None
    if not items:
        raise VrferError(f"{path}: lists no usable image")
    return items, bad
