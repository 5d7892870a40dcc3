"""AffectNet's images (vrfer.datasets.affectnet reads the lists): where they are, each face cut by its box to a
gray square, decoded in threads, and the decoded split cached under cache_dir() (valid while the list's hash and
every image's size and mtime are unchanged). `sel`: the split's vrfer.datasets.affectnet.Selection."""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VrferError
from .base import cache_dir

IMAGE_FOLDERS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images",
                 "Manually_Annotated_compressed/Manually_Annotated_Images", ".")
CACHE_VERSION = 1


def find_images(root, rows, images_dir=None) -> Path:
    """The folder that holds <subDirectory_filePath>: images_dir, or the first official place that does."""
    root = Path(root)
    if images_dir is not None:
        d = Path(images_dir)
        if not d.is_dir():
            raise VrferError(f"{d}: AffectNet images folder not found")
        return d
    candidates = [root / f if f != "." else root for f in IMAGE_FOLDERS]
    probe = [r.path for r in rows[:20]]
    if not probe:
        return next((c for c in candidates if c.is_dir()), root)
    for c in candidates:
        if not c.is_dir():
            continue
        for p in probe:
            parent = Path(p).parent
            if (c / p).is_file() or (str(parent) != "." and (c / parent).is_dir()):
                return c
    raise VrferError(f"{root}: AffectNet images not found: no {probe[0]} under "
                     f"{', '.join(str(c) for c in candidates)} (unpack Manually_Annotated_Images there, "
                     "or name the folder with images_dir)")


def _stat(path: Path):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def _decode_face(path: Path, box, size: int):
    """Crop the face box (clipped to the image), grayscale, resize -> (uint8 array | None, why, kind, stat)."""
    stat = _stat(path)
    if stat[0] < 0:
        return None, "image file missing", "image file missing", stat
    x, y, w, h = box
    try:
        with Image.open(path) as im:
            W, H = im.size
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if x1 <= x0 or y1 <= y0:
                return (None, f"face box (x {x}, y {y}, w {w}, h {h}) lies outside the {W}x{H} image",
                        "face box outside the image", stat)
            scale = 1
            reduce = min(x1 - x0, y1 - y0) // (2 * size)
            if im.format == "JPEG" and reduce >= 2:
                r = 8 if reduce >= 8 else 4 if reduce >= 4 else 2
                im.draft("L", (max(W // r, 1), max(H // r, 1)))
                scale = max(1, round(W / im.size[0]))
            # crop first (the resize filter must not reach past the box), then scale the exact box
            fx0, fy0 = x0 / scale, y0 / scale
            fx1, fy1 = min(x1 / scale, im.size[0]), min(y1 / scale, im.size[1])
            cx0, cy0 = int(math.floor(fx0)), int(math.floor(fy0))
            face = im.crop((cx0, cy0, int(math.ceil(fx1)), int(math.ceil(fy1))))
            if face.mode != "L":
                face = face.convert("L")
            face = face.resize((size, size), Image.BILINEAR, box=(fx0 - cx0, fy0 - cy0, fx1 - cx0, fy1 - cy0))
            arr = np.asarray(face, dtype=np.uint8)
    except FileNotFoundError:
        return None, "image file missing", "image file missing", stat
    except Exception as e:  # PIL raises many types for corrupt or truncated files
        return None, f"cannot decode image ({type(e).__name__}: {e})", "cannot decode image", stat
    return arr, None, None, stat


def _workers(workers) -> int:
    return workers or min(16, max(4, 2 * (os.cpu_count() or 1)))


def decode_faces(sel, img_root: Path, size: int, skip_bad: bool, workers):
    """Decode the selected rows; with skip_bad, refill a capped class from its seeded order.

    -> (kept rows in list order, their images, failures [(row, why, kind)], attempted [(row, stat)]).
    """
    taken = dict(sel.taken)
    todo = sel.rows()
    good: dict[int, np.ndarray] = {}
    failures, attempted = [], []
    with ThreadPoolExecutor(max_workers=_workers(workers)) as ex:
        while todo:
            refill: dict[int, int] = {}
            results = ex.map(lambda r: _decode_face(img_root / r.path, (r.x, r.y, r.w, r.h), size), todo)
            for r, (arr, why, kind, stat) in zip(todo, results):
                attempted.append((r, stat))
                if arr is None:
                    failures.append((r, why, kind))
                    refill[r.expression] = refill.get(r.expression, 0) + 1
                else:
                    good[r.line] = arr
            if not skip_bad:
                break
            todo = []
            for e, k in refill.items():
                more = sel.order[e][taken[e]: taken[e] + k]
                taken[e] += len(more)
                todo += more
            todo.sort(key=lambda r: r.line)
    kept = sorted((r for r, _ in attempted if r.line in good), key=lambda r: r.line)
    images = np.zeros((len(kept), size, size), np.uint8)
    for i, r in enumerate(kept):
        images[i] = good.pop(r.line)
    failures.sort(key=lambda f: f[0].line)
    return kept, images, failures, attempted


def cache_file(sel, img_root: Path, size: int) -> Path:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, str(sel.csv_path.resolve()), str(img_root.resolve()),
                                   sel.split, sel.cap, sel.seed, size]).encode())
    return cache_dir() / f"affectnet-{sel.split}-{h.hexdigest()[:20]}.npz"


def load_cache(path: Path, sel, img_root: Path, size: int, workers):
    """The cached decode if the list and every image it read are unchanged, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != CACHE_VERSION or meta.get("csv_sha") != sel.csv_sha or meta.get("size") != size:
                return None
            att_lines, att_stats = z["attempted_lines"], z["attempted_stats"]
            kept_lines, images = z["kept_lines"], z["images"]
    except Exception:
        return None  # unreadable cache: rebuild it
    by_line = {r.line: r for rs in sel.order.values() for r in rs}
    try:
        attempted = [by_line[int(n)] for n in att_lines]
        kept = [by_line[int(n)] for n in kept_lines]
        failures = [(by_line[int(n)], why, kind) for n, why, kind in meta["failures"]]
    except (KeyError, ValueError, TypeError):
        return None
    if len(kept) != len(images) or images.shape[1:] != (size, size):
        return None
    with ThreadPoolExecutor(max_workers=_workers(workers)) as ex:
        now = list(ex.map(lambda r: _stat(img_root / r.path), attempted))
    if np.asarray(now, dtype=np.int64).reshape(-1, 2).tolist() != att_stats.reshape(-1, 2).tolist():
        return None  # an image changed, appeared or went away
    return kept, images, failures, [(r, tuple(s)) for r, s in zip(attempted, now)]


def save_cache(path: Path, sel, size: int, kept, images, failures, attempted) -> None:
    meta = {"version": CACHE_VERSION, "csv_sha": sel.csv_sha, "size": size,
            "failures": [[r.line, why, kind] for r, why, kind in failures]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images, kept_lines=np.array([r.line for r in kept], np.int64),
                 attempted_lines=np.array([r.line for r, _ in attempted], np.int64),
                 attempted_stats=np.array([s for _, s in attempted], np.int64).reshape(-1, 2),
                 meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs speed
