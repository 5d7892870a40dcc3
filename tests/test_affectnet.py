"""AffectNet reader: the official list format, the paper's cap, class mapping, face crops, bad data, cache.

AffectNet itself is not here: every test writes small files in the official format (training.csv with its
header, validation.csv without one, as published; images under Manually_Annotated_Images/<subdir>/).
"""

import csv
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vrfer.classes import CLASS_INDEX, CLASSES
from vrfer.cli import main
from vrfer.datasets import affectnet, affectnet_images
from vrfer.datasets.affectnet import count_affectnet, load_affectnet, select_rows, summary
from vrfer.datasets.base import FaceSet, concat
from vrfer.datasets.ferplus import load_ferplus
from vrfer.errors import VrferError

HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
          "expression", "valence", "arousal"]
# AffectNet's ids, named as vrfer names the classes (AffectNet orders them differently from FER+)
AFFECTNET_NAMES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust",
                   6: "anger", 7: "contempt"}
# Mollahosseini et al. 2019, manually annotated training set
PUBLISHED = {0: 74874, 1: 134415, 2: 25459, 3: 14090, 4: 6378, 5: 3803, 6: 24882, 7: 3750}

# the small generated tree: per-class rows (cap 4 in most tests)
TRAIN_COUNTS = {0: 5, 1: 7, 2: 3, 3: 4, 4: 2, 5: 2, 6: 3, 7: 1}
VAL_COUNTS = {0: 2, 1: 6, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2}
DROPS = {8: 2, 9: 1, 10: 1}            # None, Uncertain, No-Face rows in training.csv
CAP = 4
EXPECTED_TRAIN = {AFFECTNET_NAMES[e]: min(n, CAP) for e, n in TRAIN_COUNTS.items()}
FILL_RGB, FILL_L = (200, 30, 30), 81   # the face box's colour and its grayscale value (ITU-R 601 luma)
PATCH_L = 255                          # white patch on the top-left quarter of the face box


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test uses a private cache folder, never the user's."""
    d = tmp_path / "cache"
    monkeypatch.setenv("VRFER_CACHE", str(d))
    return d


# ---------------------------------------------------------------- generated AffectNet trees

def landmarks(rng, x, y, w, h) -> str:
    pts = rng.uniform([x, y], [x + w, y + h], size=(68, 2))
    return ";".join(f"{v:.3f}" for v in pts.ravel())


def paint(W, H, box, rng, fill=FILL_RGB, patch=(255, 255, 255)) -> Image.Image:
    """Colour noise, the face box filled with `fill`, its top-left quarter with `patch` (clipped to the image)."""
    arr = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    x, y, w, h = box
    arr[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = fill
    arr[max(y, 0):max(y + h // 2, 0), max(x, 0):max(x + w // 2, 0)] = patch
    return Image.fromarray(arr)


def save(img: Image.Image, path, ext: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext.lower() == "png":
        img.save(path, format="PNG")
    else:
        img.save(path, format="JPEG", quality=95)


def make_entry(rng, k: int, expr: int, images, write_image: bool = True) -> dict:
    W, H = int(rng.integers(64, 161)), int(rng.integers(64, 161))
    side = int(rng.integers(16, (min(W, H) - 8) // 2 + 1)) * 2
    x, y = int(rng.integers(0, W - side + 1)), int(rng.integers(0, H - side + 1))
    ext = ("png", "jpg", "JPG")[k % 3]
    path = f"{100 + k % 5}/{hashlib.sha1(str(k).encode()).hexdigest()}.{ext}"
    e = {"path": path, "box": [x, y, side, side], "expr": expr, "W": W, "H": H, "ext": ext,
         "landmarks": landmarks(rng, x, y, side, side),
         "valence": f"{rng.uniform(-1, 1):.6f}", "arousal": f"{rng.uniform(-1, 1):.6f}"}
    if write_image:
        save(paint(W, H, e["box"], rng), images / path, ext)
    return e


def row_of(e) -> list:
    return [e["path"], *e["box"], e["landmarks"], e["expr"], e["valence"], e["arousal"]]


def write_list(path, entries, header=True, rows=None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(HEADER)
        for r in rows if rows is not None else [row_of(e) for e in entries]:
            w.writerow(r)


def make_tree(root, seed=0, lists_dir=".", images_dir="Manually_Annotated_Images"):
    """training.csv (header) + validation.csv (no header, as the official file); rows 8-10 have no image:
    they are dropped before any image is opened."""
    rng = np.random.default_rng(seed)
    images = root / images_dir
    tree, k = {}, 0
    for split, counts, drops in (("train", TRAIN_COUNTS, DROPS), ("validation", VAL_COUNTS, {})):
        exprs = [e for e, n in {**counts, **drops}.items() for _ in range(n)]
        rng.shuffle(exprs)
        tree[split] = []
        for expr in exprs:
            tree[split].append(make_entry(rng, k, expr, images, write_image=expr < 8))
            k += 1
    (root / lists_dir).mkdir(parents=True, exist_ok=True)
    write_list(root / lists_dir / "training.csv", tree["train"])
    write_list(root / lists_dir / "validation.csv", tree["validation"], header=False)
    tree["images"] = images
    return tree


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "affectnet"
    t = make_tree(root)
    t["root"] = root
    return t


def line_of(tree, e, split="train") -> int:
    return tree[split].index(e) + (2 if split == "train" else 1)   # training.csv has a header line


def assert_face(arr, tol):
    """A crop of exactly the face box: white top-left quarter, the fill colour elsewhere, no background."""
    assert arr.dtype == np.uint8 and arr.shape == (48, 48)
    q = [arr[3:21, 3:21], arr[3:21, 27:45], arr[27:45, 3:21], arr[27:45, 27:45]]
    assert np.abs(q[0].astype(int) - PATCH_L).max() <= tol
    for part in q[1:]:
        assert np.abs(part.astype(int) - FILL_L).max() <= tol


# ---------------------------------------------------------------- the paper's cap, from a list alone

def test_cap_on_the_published_training_counts_gives_the_papers_88021(tmp_path):
    # 287,651 kept rows + 1,500 rows of classes 8-10, in the official column layout. Landmarks are a short
    # ';' string here: the reader never parses them, and the full 136 numbers would make a 300 MB file.
    drops = {8: 700, 9: 500, 10: 300}
    counts = {**PUBLISHED, **drops}
    exprs = np.random.default_rng(0).permutation(np.repeat(list(counts), list(counts.values())))
    lines = [f"{i % 997}/{i:010d}.jpg,12,9,180,180,30.5;60.25;90.0;61.75,{e},0.25,-0.5\n"
             for i, e in enumerate(exprs.tolist())]
    path = tmp_path / "training.csv"
    path.write_text(",".join(HEADER) + "\n" + "".join(lines))

    got = count_affectnet(path, "train", cap=15000, seed=0)
    assert got["count"] == 88021
    assert got["classes"] == {"neutral": 15000, "happiness": 15000, "surprise": 14090, "sadness": 15000,
                              "anger": 15000, "disgust": 3803, "fear": 6378, "contempt": 3750}
    assert list(got["classes"]) == list(CLASSES)
    assert got["dropped"] == {"expression 8 (None)": 700, "expression 9 (Uncertain)": 500,
                              "expression 10 (No-Face)": 300,
                              "over the per-class cap of 15000": sum(PUBLISHED.values()) - 88021}
    # the default cap is the paper's; the seed changes which rows, never how many
    sel = select_rows(path, seed=1)
    assert len(sel) == 88021 and sel.class_counts() == got["classes"]
    assert sel.cap == 15000 and sel.dropped == got["dropped"]
    # the selection is made among the class's rows (no cap would keep every one of them)
    assert {e: len(rs) for e, rs in sel.order.items()} == PUBLISHED


# ---------------------------------------------------------------- end to end on a small tree

def test_loads_per_class_counts_with_the_cap_and_counts_every_drop(tree):
    fs = load_affectnet(tree["root"], "train", cap=CAP, seed=0)
    assert isinstance(fs, FaceSet)
    assert fs.class_counts() == EXPECTED_TRAIN
    assert len(fs) == sum(EXPECTED_TRAIN.values())
    assert fs.images.dtype == np.uint8 and fs.images.shape[1:] == (48, 48)
    assert fs.skipped == {}
    over = sum(TRAIN_COUNTS.values()) - len(fs)
    assert fs.dropped == {"expression 8 (None)": 2, "expression 9 (Uncertain)": 1, "expression 10 (No-Face)": 1,
                          f"over the per-class cap of {CAP}": over}
    # the list-only count agrees with what is loaded
    only_list = count_affectnet(tree["root"], "train", cap=CAP, seed=0)
    assert only_list["count"] == len(fs) and only_list["classes"] == fs.class_counts()
    assert only_list["dropped"] == fs.dropped


def test_affectnet_ids_map_onto_vrfers_class_order(tree):
    fs = load_affectnet(tree["root"], "train", cap=None)
    expr_of = {e["path"]: e["expr"] for e in tree["train"]}
    for name, label, target in zip(fs.names, fs.labels, fs.targets):
        assert label == CLASS_INDEX[AFFECTNET_NAMES[expr_of[name]]]
        assert target.tolist() == np.eye(8)[label].tolist()
    # e.g. AffectNet 2 Sadness is FER+'s index 3, AffectNet 3 Surprise is index 2, 6 Anger is 4, 4 Fear is 6
    assert affectnet.AFFECTNET_TO_CLASS == {0: 0, 1: 1, 2: 3, 3: 2, 4: 6, 5: 5, 6: 4, 7: 7}
    assert [CLASSES[affectnet.AFFECTNET_TO_CLASS[i]] for i in range(8)] == [AFFECTNET_NAMES[i] for i in range(8)]


def test_every_label_mode_gives_one_hot_targets_since_affectnet_labels_are_hard(tree):
    for mode in ("majority", "probability", "crossentropy", "multi_target"):
        fs = load_affectnet(tree["root"], "validation", label_mode=mode)
        assert fs.targets.dtype == np.float32
        assert (fs.targets.sum(1) == 1).all() and (fs.targets.argmax(1) == fs.labels).all()
    with pytest.raises(VrferError, match="label mode"):
        load_affectnet(tree["root"], "validation", label_mode="soft")


def test_each_image_is_cropped_to_its_face_box_grayscale_48(tree):
    fs = load_affectnet(tree["root"], "train", cap=None)
    ext_of = {e["path"]: e["ext"] for e in tree["train"]}
    assert {ext_of[n].lower() for n in fs.names} == {"png", "jpg"}
    for name, img in zip(fs.names, fs.images):
        assert_face(img, tol=1 if ext_of[name] == "png" else 24)


def test_a_box_reaching_past_the_image_is_clipped_to_it(tree):
    rng = np.random.default_rng(5)
    e = tree["train"][0]
    W, H, box = 100, 80, [-20, 10, 60, 90]   # visible part: x 0..40, y 10..80
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    img[10:80, 0:20] = 255                    # left half of the visible part white
    img[10:80, 20:40] = FILL_RGB
    save(Image.fromarray(img), tree["images"] / e["path"], "png")
    e["box"], e["expr"] = box, 7
    write_list(tree["root"] / "training.csv", tree["train"])
    fs = load_affectnet(tree["root"], "train", cap=None)
    crop = fs.images[fs.names.index(e["path"])]
    assert np.abs(crop[:, :22].astype(int) - 255).max() <= 1
    assert np.abs(crop[:, 26:].astype(int) - FILL_L).max() <= 1


def test_large_jpegs_decode_at_reduced_scale_with_the_same_crop(tree):
    rng = np.random.default_rng(6)
    e = tree["train"][0]
    W, H, box = 1200, 900, [300, 150, 640, 640]   # face >= 8x the output size: libjpeg decodes at 1/4
    img = paint(W, H, box, rng)
    save(img, tree["images"] / e["path"], "jpg")
    e["box"] = box
    write_list(tree["root"] / "training.csv", tree["train"])
    fs = load_affectnet(tree["root"], "train", cap=None)
    crop = fs.images[fs.names.index(e["path"])]
    assert_face(crop, tol=24)
    with Image.open(tree["images"] / e["path"]) as im:     # full-scale decode of the same box, for reference
        full = im.convert("L").crop((300, 150, 940, 790)).resize((48, 48), Image.BILINEAR)
    assert np.abs(crop.astype(int) - np.asarray(full, int)).mean() < 3


def test_the_training_cap_is_seeded_and_deterministic(tree):
    a = load_affectnet(tree["root"], "train", cap=CAP, seed=0)
    b = load_affectnet(tree["root"], "train", cap=CAP, seed=0, use_cache=False)
    c = load_affectnet(tree["root"], "train", cap=CAP, seed=1)
    assert a.names == b.names and np.array_equal(a.images, b.images)
    assert a.class_counts() == c.class_counts() == EXPECTED_TRAIN
    assert a.names != c.names
    # the loader takes exactly the rows the list-only selection names, in list order
    sel = select_rows(tree["root"] / "training.csv", "train", cap=CAP, seed=0)
    assert a.names == [r.path for r in sel.rows()]
    # classes under the cap are taken whole
    assert {e["path"] for e in tree["train"] if e["expr"] == 2} <= set(a.names)


def test_validation_is_the_published_set_never_capped(tree):
    fs = load_affectnet(tree["root"], "validation", cap=1)
    assert fs.class_counts() == {AFFECTNET_NAMES[e]: n for e, n in VAL_COUNTS.items()}
    assert fs.names == [e["path"] for e in tree["validation"]]   # list order, headerless file read whole
    assert fs.dropped == {}
    assert load_affectnet(tree["root"], "valid").names == fs.names  # the name vrfer's splits use


def test_official_archive_layouts_and_an_explicit_images_folder(tmp_path):
    # lists in Manually_Annotated_file_lists/, images straight under ROOT
    root = tmp_path / "a"
    make_tree(root, lists_dir="Manually_Annotated_file_lists", images_dir=".")
    assert load_affectnet(root, "train", cap=CAP).class_counts() == EXPECTED_TRAIN
    # images elsewhere, named explicitly
    root = tmp_path / "b"
    make_tree(root, images_dir="../elsewhere")
    assert load_affectnet(root, "train", cap=CAP, images_dir=tmp_path / "elsewhere").class_counts() == EXPECTED_TRAIN
    with pytest.raises(VrferError, match="images not found"):
        load_affectnet(root, "train", cap=CAP)


# ---------------------------------------------------------------- bad data

def _sadness_entry(tree):
    return next(e for e in tree["train"] if e["expr"] == 2)   # sadness: 3 rows, under the cap


def _bad_missing(tree, e):
    os.remove(tree["images"] / e["path"])


def _bad_corrupt(tree, e):
    (tree["images"] / e["path"]).write_bytes(b"this is not an image")


def _bad_truncated(tree, e):
    p = tree["images"] / e["path"]
    save(paint(e["W"], e["H"], e["box"], np.random.default_rng(1)), p, "jpg")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _bad_box_outside(tree, e):
    e["box"][0] = e["W"] + 10


def _bad_zero_width(tree, e):
    e["box"][2] = 0


def _bad_box_text(tree, e):
    e["box"][1] = "top"


def _bad_expression_text(tree, e):
    e["expr"] = "sad"


def _bad_expression_id(tree, e):
    e["expr"] = 11


BAD = [  # (case, what it does, the count key with skip_bad, the message names the image file)
    ("missing image", _bad_missing, "image file missing", True),
    ("corrupt image", _bad_corrupt, "cannot decode image", True),
    ("truncated jpeg", _bad_truncated, "cannot decode image", True),
    ("box outside the image", _bad_box_outside, "face box outside the image", True),
    ("zero-width box", _bad_zero_width, "bad face box", False),
    ("non-numeric box", _bad_box_text, "face box not numbers", False),
    ("non-numeric expression", _bad_expression_text, "expression not a number", False),
    ("expression outside 0-10", _bad_expression_id, "unknown expression", False),
]


@pytest.mark.parametrize("case,spoil,kind,names_image", BAD, ids=[b[0] for b in BAD])
def test_bad_data_names_file_and_row_or_is_counted_with_skip_bad(tree, case, spoil, kind, names_image):
    e = _sadness_entry(tree)
    spoil(tree, e)
    csv_path = tree["root"] / "training.csv"
    write_list(csv_path, tree["train"])
    with pytest.raises(VrferError) as err:
        load_affectnet(tree["root"], "train", cap=CAP)
    msg = str(err.value)
    assert str(csv_path) in msg and f"row {line_of(tree, e)}" in msg
    if names_image:
        assert str(tree["images"] / e["path"]) in msg
    fs = load_affectnet(tree["root"], "train", cap=CAP, skip_bad=True)
    assert fs.skipped == {kind: 1}
    assert fs.class_counts() == {**EXPECTED_TRAIN, "sadness": EXPECTED_TRAIN["sadness"] - 1}
    assert e["path"] not in fs.names


def test_a_malformed_row_names_file_and_row(tree):
    e = _sadness_entry(tree)
    rows = [row_of(x) for x in tree["train"]]
    rows[tree["train"].index(e)].pop(5)          # the landmarks field lost
    csv_path = tree["root"] / "training.csv"
    write_list(csv_path, None, rows=rows)
    with pytest.raises(VrferError, match=rf"training\.csv, row {line_of(tree, e)}: expected 9 fields"):
        load_affectnet(tree["root"], "train", cap=CAP)
    fs = load_affectnet(tree["root"], "train", cap=CAP, skip_bad=True)
    assert fs.skipped == {"malformed row": 1}
    assert count_affectnet(tree["root"], cap=CAP, skip_bad=True)["skipped"] == {"malformed row": 1}


def test_an_unknown_column_layout_is_an_error_even_with_skip_bad(tree):
    csv_path = tree["root"] / "training.csv"
    rows = [[e["path"], *e["box"], e["expr"]] for e in tree["train"]]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "w", "h", "label"])
        w.writerows(rows)
    for skip in (False, True):
        with pytest.raises(VrferError, match=r"training\.csv: unknown column layout"):
            load_affectnet(tree["root"], "train", skip_bad=skip)
    csv_path.write_text("")
    with pytest.raises(VrferError, match="empty file"):
        count_affectnet(csv_path)


def test_missing_images_folder_or_list_is_a_clear_error(tmp_path):
    root = tmp_path / "lists_only"
    make_tree(root)
    shutil.rmtree(root / "Manually_Annotated_Images")
    with pytest.raises(VrferError, match="AffectNet images not found"):
        load_affectnet(root, "train")
    assert count_affectnet(root, cap=CAP)["count"] == sum(EXPECTED_TRAIN.values())  # the lists alone still count
    with pytest.raises(VrferError, match="validation.csv not found"):
        load_affectnet(tmp_path, "validation")
    with pytest.raises(VrferError, match="unknown AffectNet split"):
        load_affectnet(root, "test")


def test_skip_bad_refills_a_capped_class_from_its_seeded_order(tree):
    sel = select_rows(tree["root"] / "training.csv", cap=CAP, seed=0)
    chosen = next(r for r in sel.rows() if r.expression == 1)    # happiness: 7 rows, cap 4
    os.remove(tree["images"] / chosen.path)
    with pytest.raises(VrferError, match=f"row {chosen.line} "):
        load_affectnet(tree["root"], "train", cap=CAP)
    fs = load_affectnet(tree["root"], "train", cap=CAP, skip_bad=True)
    assert fs.skipped == {"image file missing": 1}
    assert fs.class_counts() == EXPECTED_TRAIN                    # the next row in the seeded order stands in
    assert chosen.path not in fs.names
    assert fs.dropped[f"over the per-class cap of {CAP}"] == sum(TRAIN_COUNTS.values()) - len(fs) - 1


# ---------------------------------------------------------------- cache

def _bump(path):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_the_cache_is_used_and_notices_a_changed_image_or_list(tree, cache, monkeypatch):
    first = load_affectnet(tree["root"], "train", cap=CAP)
    assert len(list(cache.glob("affectnet-train-*.npz"))) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded although the cache is valid")
    with monkeypatch.context() as m:
        m.setattr(affectnet_images, "_decode_face", no_decoding)
        again = load_affectnet(tree["root"], "train", cap=CAP)
    assert again.names == first.names and np.array_equal(again.images, first.images)

    # an image repainted (patch now the fill colour, box white): new pixels come back
    name = first.names[0]
    e = next(x for x in tree["train"] if x["path"] == name)
    p = tree["images"] / name
    save(paint(e["W"], e["H"], e["box"], np.random.default_rng(9), fill=(255, 255, 255), patch=FILL_RGB), p, "png")
    _bump(p)
    changed = load_affectnet(tree["root"], "train", cap=CAP)
    i = changed.names.index(name)
    assert abs(int(changed.images[i][3:21, 3:21].mean()) - FILL_L) <= 24
    assert not np.array_equal(changed.images[i], first.images[first.names.index(name)])

    # the list edited: the single contempt row becomes disgust
    e7 = next(x for x in tree["train"] if x["expr"] == 7)
    e7["expr"] = 5
    write_list(tree["root"] / "training.csv", tree["train"])
    relabelled = load_affectnet(tree["root"], "train", cap=CAP)
    assert relabelled.class_counts()["contempt"] == 0 and relabelled.class_counts()["disgust"] == 3
    assert relabelled.labels[relabelled.names.index(e7["path"])] == CLASS_INDEX["disgust"]

    # a skipped image that reappears is read
    e2 = _sadness_entry(tree)
    saved = (tree["images"] / e2["path"]).read_bytes()
    os.remove(tree["images"] / e2["path"])
    assert load_affectnet(tree["root"], "train", cap=CAP, skip_bad=True).class_counts()["sadness"] == 2
    with pytest.raises(VrferError, match="image file missing"):   # a cached failure still stops a strict read
        load_affectnet(tree["root"], "train", cap=CAP)
    (tree["images"] / e2["path"]).write_bytes(saved)
    assert load_affectnet(tree["root"], "train", cap=CAP).class_counts()["sadness"] == 3


# ---------------------------------------------------------------- joint FER+ + AffectNet

def _ferplus_tree(root):
    """Microsoft's layout, two 48x48 images per split: one happiness, one sadness."""
    rng = np.random.default_rng(3)
    votes = {"happiness": [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], "sadness": [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]}
    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        d = root / folder
        d.mkdir(parents=True)
        with open(d / "label.csv", "w", newline="") as f:
            w = csv.writer(f)
            for i, (cls, v) in enumerate(votes.items()):
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(d / f"fer{i:07d}.png")
                w.writerow([f"fer{i:07d}.png", "(0, 0, 48, 48)", *v])
    return root


def test_ferplus_and_affectnet_join_into_one_training_set_with_one_class_order(tree, tmp_path):
    fer = load_ferplus(_ferplus_tree(tmp_path / "ferplus"), "train")
    aff = load_affectnet(tree["root"], "train", cap=CAP)
    joint = concat([fer, aff])
    assert joint.images.shape == (len(fer) + len(aff), 48, 48) and joint.images.dtype == np.uint8
    assert joint.targets.shape == (len(joint), 8)
    assert list(joint.class_counts()) == list(CLASSES)
    assert joint.class_counts() == {c: fer.class_counts()[c] + aff.class_counts()[c] for c in CLASSES}
    assert joint.class_counts()["sadness"] == 1 + EXPECTED_TRAIN["sadness"]
    # a crop size that does not match FER+ is refused, not silently mixed
    with pytest.raises(VrferError, match="different crop sizes"):
        concat([fer, load_affectnet(tree["root"], "train", cap=CAP, size=64)])


# ---------------------------------------------------------------- summary and the CLI

def test_cli_data_summary_prints_the_documented_json(tree, capsys):
    assert main(["data", "summary", "--dataset", "affectnet", "--root", str(tree["root"]), "--cap", str(CAP),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"train", "valid"}
    assert out["train"]["count"] == sum(EXPECTED_TRAIN.values())
    assert out["train"]["classes"] == EXPECTED_TRAIN and list(out["train"]["classes"]) == list(CLASSES)
    assert out["train"]["dropped"]["expression 10 (No-Face)"] == 1
    assert out["valid"] == {"count": sum(VAL_COUNTS.values()),
                            "classes": {AFFECTNET_NAMES[e]: n for e, n in VAL_COUNTS.items()}}
    assert out == summary(tree["root"], cap=CAP)


def test_cli_reports_bad_data_in_one_line_and_counts_it_with_skip_bad(tree, capsys):
    os.remove(tree["images"] / _sadness_entry(tree)["path"])
    assert main(["data", "summary", "--dataset", "affectnet", "--root", str(tree["root"]), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vrfer: error: ") and "image file missing" in err and err.count("\n") == 1
    assert main(["data", "summary", "--dataset", "affectnet", "--root", str(tree["root"]), "--skip-bad",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["skipped"] == {"image file missing": 1}


def test_evaluate_on_affectnet_names_the_validation_set_it_uses_for_test(tree, tmp_path, capsys):
    from vrfer.models import create_model, save_model
    model = tmp_path / "m.safetensors"
    save_model(create_model("vrfer-cnn-small", pretrained=False), model)
    assert main(["evaluate", "--model", str(model), "--dataset", "affectnet", "--root", str(tree["root"]),
                 "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "validation" and res["n"] == len(tree["validation"])


def test_training_on_affectnet_says_which_rows_its_rules_left_out(tree, tmp_path, capsys):
    from vrfer.training.recipe import from_dict
    from vrfer.training.data import load_data
    recipe = from_dict({"model": "vrfer-cnn-small", "data": {"datasets": ["affectnet"], "val": "affectnet",
                                                             "affectnet_cap": CAP}})
    load_data(recipe, {"affectnet": str(tree["root"])}, quiet=False)
    out = capsys.readouterr().out
    over = sum(max(0, n - CAP) for n in TRAIN_COUNTS.values())
    assert f"affectnet: left out {sum(DROPS.values()) + over} rows" in out and "over the per-class cap of 4" in out
