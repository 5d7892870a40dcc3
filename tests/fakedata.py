"""Small FER+ files in Microsoft's exact formats, generated for tests (no real data needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
FOLDER = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}

# (votes over neutral..contempt, unknown, NF) covering the label rules' branches
VOTE_PATTERNS = [
    [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],   # clear neutral
    [0, 8, 1, 1, 0, 0, 0, 0, 0, 0],    # happiness; single votes dropped
    [0, 0, 5, 0, 0, 0, 4, 0, 1, 0],    # surprise 5 vs fear 4: majority keeps, soft keeps both
    [0, 0, 0, 4, 4, 2, 0, 0, 0, 0],    # sadness/anger tie: majority drops, soft keeps
    [0, 0, 0, 0, 0, 0, 0, 0, 10, 0],   # unknown: dropped in every mode
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],   # not a face: dropped
    [0, 0, 0, 0, 0, 7, 0, 3, 0, 0],    # disgust with contempt
    [3, 0, 0, 0, 0, 0, 0, 7, 0, 0],    # contempt
]


def make_rows(n_per_split: int = 8, seed: int = 0):
    """Rows as in fer2013.csv/fer2013new.csv: (usage, name, pixels uint8 48x48, votes)."""
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    for split in ("train", "valid", "test"):
        for i in range(n_per_split):
            img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            rows.append((USAGE[split], f"fer{k:07d}.png", img, VOTE_PATTERNS[i % len(VOTE_PATTERNS)]))
            k += 1
    return rows


def write_raw(root: Path, rows, extra_nameless: int = 2) -> Path:
    """fer2013.csv (emotion, pixels, Usage) + fer2013new.csv (Usage, Image name, 10 votes), row-aligned."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f_old, open(root / "fer2013new.csv", "w", newline="") as f_new:
        old, new = csv.writer(f_old), csv.writer(f_new)
        old.writerow(["emotion", "pixels", "Usage"])
        new.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                      "fear", "contempt", "unknown", "NF"])
        for usage, name, img, votes in rows:
            old.writerow([0, " ".join(str(int(v)) for v in img.ravel()), usage])
            new.writerow([usage, name, *votes])
        for _ in range(extra_nameless):  # rows Microsoft left without an image (10 NF votes)
            old.writerow([0, " ".join(["0"] * 2304), "Training"])
            new.writerow(["Training", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10])
    return root


def write_folders(root: Path, rows) -> Path:
    """Microsoft's generated layout: FER2013*/ PNGs + label.csv (name, "(0, 0, 48, 48)", 10 votes)."""
    by_split = {}
    for usage, name, img, votes in rows:
        split = next(s for s, u in USAGE.items() if u == usage)
        by_split.setdefault(split, []).append((name, img, votes))
    for split, folder in FOLDER.items():
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "label.csv", "w", newline="") as f:
            w = csv.writer(f)
            for name, img, votes in by_split.get(split, []):
                Image.fromarray(img).save(d / name)
                w.writerow([name, "(0, 0, 48, 48)", *votes])
    with open(root / "fer2013new.csv", "w", newline="") as f:  # Microsoft's layout keeps the vote file beside
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                    "fear", "contempt", "unknown", "NF"])
        for usage, name, img, votes in rows:
            w.writerow([usage, name, *votes])
    return root
