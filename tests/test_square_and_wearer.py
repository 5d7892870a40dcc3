"""Issue 33: every answer says where the model read (`square`: x, y, side in image pixels, beside the detector's
`box`), the same through predict --json, the API and serve; and which face is the wearer when several are found
(vrfer.faces.wearer_first), the same everywhere. Faces: the bundled sample photos (350x350 gray, a headset over
the eyes), placed at known places on a larger canvas."""

from __future__ import annotations

import json

import cv2
import httpx
import numpy as np
import pytest

from vrfer.cli import main
from vrfer.faces import Face, get_detector, wearer_first
from vrfer.inference.images import load_image
from vrfer.pretrained import DEFAULT_MODEL
from vrfer.recognizer import Recognizer
from vrfer.inputs import samples_path

HAPPY = samples_path() / "photo-happiness-Cameron_Diaz_0001.jpg"
SURPRISE = samples_path() / "photo-surprise-Anna_Chicherova_0001.jpg"


def placed(photo, canvas_wh, at, side) -> tuple[np.ndarray, np.ndarray]:
    """(a gray canvas with the photo scaled to side x side with its corner at `at`, the photo's mouth corners
    on that canvas): the mouth is the detector's on the photo alone, moved with the photo."""
    img = load_image(photo)
    [face] = get_detector(threads=1).detect(img)
    k = side / img.shape[0]
    canvas = np.full(canvas_wh[::-1], 120, np.uint8)
    canvas[at[1]:at[1] + side, at[0]:at[0] + side] = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return canvas, face.landmarks[3:5] * k + np.array(at, np.float32)


def in_lower_half(point, square) -> bool:
    x, y, s = square
    return x <= point[0] <= x + s and y + s / 2 <= point[1] <= y + s


@pytest.fixture(scope="module")
def rec():
    return Recognizer(threads=1)


@pytest.mark.parametrize(("at", "side"), [((40, 30), 200), ((300, 160), 140), ((150, 60), 260)])
def test_the_square_holds_the_mouth_of_a_face_placed_at_a_known_place(rec, at, side):
    canvas, mouth = placed(HAPPY, (640, 360), at, side)
    [p] = rec.predict(canvas)
    x, _, s = p.square
    assert all(in_lower_half(m, p.square) for m in mouth), (p.square, mouth)
    # the square is the one cut: inside the placed photo's neighbourhood and about a face wide
    assert at[0] - 0.2 * side <= x and x + s <= at[0] + 1.2 * side and 0.5 * side <= s <= 1.3 * side


def test_the_square_is_the_box_itself_for_a_fixed_region_and_the_image_for_face_none(rec):
    img = load_image(HAPPY)
    assert Recognizer(face="none", threads=1).predict(img)[0].square == (0, 0, 350)
    # a fixed region 100 wide, 60 tall: centred in a square of its longer side
    assert Recognizer(face="20,30,100,60", threads=1).predict(img)[0].square == (20, 10, 100)


def two_faces(swap: bool = False) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The two sample photos side by side on one canvas: Cameron Diaz 300 px, Anna Chicherova 180 px; -> (canvas,
    the large face's region x, y, w, h)."""
    a = cv2.resize(load_image(HAPPY), (300, 300), interpolation=cv2.INTER_AREA)
    b = cv2.resize(load_image(SURPRISE), (180, 180), interpolation=cv2.INTER_AREA)
    canvas = np.full((340, 540), 120, np.uint8)
    xa, xb = (230, 20) if swap else (10, 340)
    canvas[20:320, xa:xa + 300] = a
    canvas[60:240, xb:xb + 180] = b
    return canvas, (xa, 20, 300, 300)


@pytest.mark.parametrize("swap", [False, True])
def test_of_two_faces_the_larger_one_is_the_wearer_whichever_side_it_is_on(rec, swap):
    canvas, (x, y, w, h) = two_faces(swap)
    preds = rec.predict(canvas)
    assert len(preds) == 2
    bx, by, bw, bh = preds[0].box
    assert x <= bx + bw / 2 <= x + w and y <= by + bh / 2 <= y + h      # the first answer is the large face's
    assert preds[0].box[2] > preds[1].box[2]


def test_the_wearer_rule_is_box_area_times_score():
    big_doubtful = Face((0, 0, 100, 100), 0.3)     # 3000
    small_sure = Face((0, 0, 50, 50), 0.99)        # 2475
    mid = Face((0, 0, 60, 60), 0.95)               # 3420
    assert wearer_first([small_sure, big_doubtful, mid]) == [mid, big_doubtful, small_sure]
    tie_a, tie_b = Face((0, 0, 10, 10), 0.5), Face((5, 5, 10, 10), 0.5)
    assert wearer_first([tie_a, tie_b])[0] is tie_a and wearer_first([tie_b, tie_a])[0] is tie_b   # stable


def test_predict_json_the_api_and_serve_give_the_same_boxes_squares_and_order(rec, capfd, tmp_path):
    """One image with two faces: the same faces, in the same order (the wearer first), with the same box and
    square, through `vrfer predict --json`, Recognizer.predict, serve's POST /predict and a WebSocket frame."""
    from websockets.sync.client import connect as ws_connect

    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    from vrfer.serve.engine import Predictor

    canvas, _ = two_faces()
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    api = [(list(p.box), list(p.square)) for p in rec.predict(path)]
    assert len(api) == 2

    assert main(["predict", "--threads", "1", "--json", str(path)]) == 0
    cli = [(d["box"], d["square"]) for d in map(json.loads, capfd.readouterr().out.splitlines())]

    cfg = ServeConfig(model=DEFAULT_MODEL, face="detect", port=0)
    with ServerThread(create_app(cfg, Predictor(DEFAULT_MODEL, "detect", threads=1)), cfg) as srv:
        ev = httpx.post(srv.url + "/predict", content=path.read_bytes(), timeout=60).json()
        http = [(f["box"], f["square"]) for f in ev["faces"]]
        ws_events = []
        for track in (0, 1):   # every frame searched whole, and the tracker's first frame (a whole search)
            with ws_connect(srv.url.replace("http", "ws", 1) + f"/ws?track={track}", open_timeout=20,
                            max_size=None) as ws:
                ws.send(path.read_bytes())
                while (ev := json.loads(ws.recv(timeout=60)))["type"] != "prediction":
                    pass
                ws_events.append([(f["box"], f["square"]) for f in ev["faces"]])
    assert cli == api == http == ws_events[0]
    assert ws_events[1] == api[:1]       # the tracker follows one face: the wearer


@pytest.fixture
def surer_small_face(monkeypatch, tmp_path):
    """The two faces of two_faces with their scores swapped, the small face the surer one (the detector's order),
    the large one still the wearer by box area x score; every detector of the test answers them. -> (path of the
    image in a labelled folder, the large face, the small one)."""
    from dataclasses import replace

    canvas, _ = two_faces()
    (root := tmp_path / "set").mkdir()
    cv2.imwrite(str(root / "two.png"), canvas)
    (root / "labels.csv").write_text("file,label\ntwo.png,1\n")
    big, small = get_detector(threads=1).detect(canvas)
    assert big.box[2] > small.box[2]
    big, small = replace(big, score=0.3), replace(small, score=0.99)
    assert wearer_first([small, big])[0] is big

    class Swapped:
        def detect(self, image):
            return [replace(small), replace(big)]

    monkeypatch.setattr("vrfer.inference.pipeline.get_detector", lambda *a, **kw: Swapped())   # where it is looked up
    return root / "two.png", big, small


def test_evaluate_and_adapt_read_the_wearer_not_the_surest_face(surer_small_face):
    """evaluate (its crops and where it paints the headset) and adapt's unlabelled faces take the wearer too."""
    from vrfer.personal.adapt import unlabelled_faces
    from vrfer.evaluate import folder_faces
    from vrfer.occlusion import draw_headset

    path, big, small = surer_small_face
    rec = Recognizer(face="detect", threads=1)
    img = load_image(path)
    wearer, other = rec.crops(img, [big])[0], rec.crops(img, [small])[0]
    assert not np.array_equal(wearer, other)
    crops = folder_faces(DEFAULT_MODEL, path.parent, face="detect", threads=1, progress=False)[1]
    assert np.array_equal(crops, [wearer])
    crops = folder_faces(DEFAULT_MODEL, path.parent, face="detect", occlusion="headset", threads=1, progress=False)[1]
    assert np.array_equal(crops, rec.crops(draw_headset(img, big.box), [big]))
    assert np.array_equal(unlabelled_faces(rec, [path])[0], [wearer])


def test_a_large_doubtful_face_leads_a_small_sure_one_in_predict_the_api_and_serve(surer_small_face, capfd):
    from vrfer.serve.app import ServeConfig, ServerThread, create_app
    from vrfer.serve.engine import Predictor

    path, big, small = surer_small_face
    api = [(list(p.box), list(p.square)) for p in Recognizer(threads=1).predict(path)]
    assert [b for b, _ in api] == [list(big.int_box()), list(small.int_box())]
    assert main(["predict", "--threads", "1", "--json", str(path)]) == 0
    cli = [(d["box"], d["square"]) for d in map(json.loads, capfd.readouterr().out.splitlines())]
    cfg = ServeConfig(model=DEFAULT_MODEL, face="detect", port=0)
    with ServerThread(create_app(cfg, Predictor(DEFAULT_MODEL, "detect", threads=1)), cfg) as srv:
        ev = httpx.post(srv.url + "/predict", content=path.read_bytes(), timeout=60).json()
    assert cli == api == [(f["box"], f["square"]) for f in ev["faces"]]

def test_predict_out_draws_the_square_the_model_read_beside_the_box(rec, tmp_path):
    """`vrfer predict --out`: each face's square (vrfer.recognizer.SQUARE_BGR) is drawn, its outline and, framed
    again, the rows the model reads (the lower half for a visible-half model)."""
    from vrfer.recognizer import SQUARE_BGR

    canvas, _ = two_faces()
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    assert main(["predict", "--threads", "1", "--out", str(tmp_path / "ann"), str(path)]) == 0
    out = cv2.imread(str(tmp_path / "ann" / "two.png"))
    assert out.shape[:2] == canvas.shape       # no scaling: the square's pixels are the image's
    cfg = rec.cfg
    hidden = cfg.occlusion if cfg.input_mode != "full" else 0.0

    def drawn(y, x0, x1) -> float:     # the share of a row's pixels in the square's colour
        row = out[min(max(y, 0), out.shape[0] - 1), max(x0, 0):min(x1, out.shape[1])]
        return float(np.all(row == SQUARE_BGR, axis=1).mean())

    preds = rec.predict(path)
    assert len(preds) == 2
    for p in preds:
        x, y, s = p.square
        for row in (y + round(hidden * s), y + s):     # where the read rows start, the square's bottom (the top
            assert drawn(row, x, x + s) > 0.8, (p.square, row)     # may lie under the label)
        assert drawn(y + round(hidden * s) + 4, x + 4, x + s - 4) < 0.1     # an outline, not a fill
