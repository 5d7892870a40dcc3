"""FER+ reader: Microsoft's label rules, both on-disk forms, bad data, cache, and the real split sizes."""

import json
import os

import numpy as np
import pytest
from fakedata import VOTE_PATTERNS, make_rows, write_folders, write_raw

from vrfer.classes import CLASSES
from vrfer.cli import main
from vrfer.datasets.ferplus import load_ferplus
from vrfer.datasets.labels import process_votes
from vrfer.errors import VrferError


# ---------------------------------------------------------------- label rules

def test_majority_needs_more_than_half_of_the_votes_left_after_dropping_single_votes():
    assert CLASSES[process_votes([0, 8, 1, 1, 0, 0, 0, 0, 0, 0], "majority").argmax()] == "happiness"
    assert process_votes([0, 0, 5, 0, 0, 0, 4, 0, 1, 0], "majority")[2] == 1.0   # 5 of 9 (the 1 dropped)
    assert process_votes([0, 0, 0, 4, 4, 2, 0, 0, 0, 0], "majority") is None     # no majority


def test_unknown_or_not_a_face_winners_are_dropped_in_every_mode():
    for mode in ("majority", "probability", "crossentropy", "multi_target"):
        assert process_votes([0, 0, 0, 0, 0, 0, 0, 0, 10, 0], mode) is None
        assert process_votes([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], mode) is None


def test_crossentropy_keeps_the_top_emotions_as_a_distribution():
    t = process_votes([0, 0, 0, 4, 4, 2, 0, 0, 0, 0], "crossentropy")
    # 4 + 4 = 80% >= 75%: sadness and anger kept, disgust left out, renormalised
    np.testing.assert_allclose(t, [0, 0, 0, 0.5, 0.5, 0, 0, 0], atol=1e-6)
    t = process_votes([0, 0, 5, 0, 0, 0, 4, 0, 1, 0], "probability")
    np.testing.assert_allclose(t, [0, 0, 5 / 9, 0, 0, 0, 4 / 9, 0], atol=1e-6)




def test_multi_target_marks_every_emotion_with_at_least_30_percent():
    t = process_votes([0, 0, 5, 0, 0, 0, 4, 0, 1, 0], "multi_target")
    np.testing.assert_array_equal(t, [0, 0, 1, 0, 0, 0, 1, 0])


# ---------------------------------------------------------------- both on-disk forms

def test_raw_csv_pair_gives_the_same_labels_as_the_folder_layout(tmp_path, private_cache):
    rows = make_rows()
    raw = write_raw(tmp_path / "raw", rows)
    folders = write_folders(tmp_path / "folders", rows)
    for split in ("train", "valid", "test"):
        for mode in ("majority", "crossentropy", "multi_target"):
            a = load_ferplus(raw, split, mode)
            b = load_ferplus(folders, split, mode, votes="fer2013new")
            c = load_ferplus(folders, split, mode, votes="label")  # label.csv holds the same votes here
            assert a.names == b.names == c.names and len(a) > 0
            np.testing.assert_array_equal(a.images, b.images)
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.targets, c.targets)


def test_reader_reports_what_the_label_rule_dropped(tmp_path, private_cache):
    root = write_folders(tmp_path, make_rows())
    fs = load_ferplus(root, "train", "majority")
    kept = sum(process_votes(v, "majority") is not None for v in VOTE_PATTERNS)
    assert len(fs) == kept
    assert sum(fs.dropped.values()) == len(VOTE_PATTERNS) - kept


# ---------------------------------------------------------------- bad data

def _bad(tmp_path, mutate):
    root = write_folders(tmp_path / "d", make_rows())
    mutate(root / "FER2013Train")
    return root


@pytest.mark.parametrize("case, expect", [
    ("missing image", "fer0000001.png"),
    ("corrupt image", "fer0000001.png"),
    ("wrong size", "expected 48x48"),
    ("malformed row", "row 2"),
    ("votes not numbers", "row 2"),
])
def test_bad_data_stops_with_a_message_naming_file_and_row(tmp_path, private_cache, case, expect):
    def mutate(d):
        lines = (d / "label.csv").read_text().splitlines()
        if case == "missing image":
            os.remove(d / "fer0000001.png")
        elif case == "corrupt image":
            (d / "fer0000001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        elif case == "wrong size":
            from PIL import Image
            Image.new("L", (40, 40)).save(d / "fer0000001.png")
        elif case == "malformed row":
            lines[1] = "fer0000001.png,(0 0 48 48),1,2"
        elif case == "votes not numbers":
            lines[1] = lines[1].rsplit(",", 1)[0] + ",x"
        (d / "label.csv").write_text("\n".join(lines) + "\n")
    root = _bad(tmp_path, mutate)
    with pytest.raises(VrferError) as e:
        load_ferplus(root, "train", use_cache=False)
    msg = str(e.value)
    assert expect in msg and "FER2013Train" in msg
    fs = load_ferplus(root, "train", skip_bad=True, use_cache=False)
    assert sum(fs.skipped.values()) == 1  # counted, not silently dropped


def test_unknown_column_layout_is_refused(tmp_path, private_cache):
    root = write_raw(tmp_path, make_rows())
    text = (root / "fer2013new.csv").read_text().replace("Image name", "image")
    (root / "fer2013new.csv").write_text(text)
    with pytest.raises(VrferError, match="unknown column layout"):
        load_ferplus(root, "train")


def test_not_a_ferplus_root_is_refused(tmp_path):
    with pytest.raises(VrferError, match="not a FER\\+ root"):
        load_ferplus(tmp_path, "train")


def test_cli_bad_data_gives_one_line_and_exit_code_2(tmp_path, private_cache, capsys):
    root = _bad(tmp_path, lambda d: os.remove(d / "fer0000002.png"))
    assert main(["data", "summary", "--dataset", "ferplus", "--root", str(root), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fer0000002.png" in err[0]
    assert main(["data", "summary", "--dataset", "ferplus", "--root", str(root), "--json", "--skip-bad"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"]["skipped"] == {"image file missing": 1}


# ---------------------------------------------------------------- cache

def test_cache_notices_a_changed_image(tmp_path, private_cache):
    from PIL import Image
    root = write_folders(tmp_path, make_rows())
    first = load_ferplus(root, "test")
    assert any(private_cache.iterdir())
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(root / "FER2013Test" / first.names[0])
    again = load_ferplus(root, "test")
    assert (again.images[0] == 7).all() and not (first.images[0] == 7).all()


# ---------------------------------------------------------------- summary command and the real data

def test_summary_json_shape(tmp_path, private_cache, capsys):
    root = write_folders(tmp_path, make_rows())
    assert main(["data", "summary", "--dataset", "ferplus", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"train", "valid", "test"}
    for split in out.values():
        assert set(split["classes"]) == set(CLASSES)
        assert split["count"] == sum(split["classes"].values())


def test_real_ferplus_majority_split_sizes(ferplus_root):
    sizes = {s: len(load_ferplus(ferplus_root, s, "majority", "label")) for s in ("train", "valid", "test")}
    assert sizes == {"train": 25045, "valid": 3191, "test": 3137}
    test = load_ferplus(ferplus_root, "test")
    assert test.class_counts() == {"neutral": 1083, "happiness": 892, "surprise": 394, "sadness": 382,
                                   "anger": 269, "disgust": 16, "fear": 86, "contempt": 15}
    assert test.images.shape[1:] == (48, 48) and test.images.dtype == np.uint8


def test_crossentropy_discards_images_needing_more_than_three_emotions():
    assert process_votes([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "crossentropy") is None  # 5-way tie
