"""Fine-tune vrfer's face detector (RetinaFace MobileNet-0.25) on VR-venue photos of people in real-looking
headsets, and write it as the detector's ONNX graph.

    python tools/train_face_detector.py --out runs/detector [--steps 4000] [--batch 8] [--crop 480] [--seed 0]
           [--scenes 2400] [--empty 400] [--cache DIR] [--resume]
    VRFER_RETINAFACE_ONNX=runs/detector/retinaface_mnet025.onnx python benchmarks/headset_scenes.py --split test

Why: the shipped RetinaFace never learnt faces behind a headset. Under a bulky real headset, turned 30-40 degrees,
seen from above or small, it scores the wearer at no scale (benchmarks/headset_scenes.py: a fifth of the wearers
missed), and it boxes the visible nose-mouth-chin as if it were a whole face. Taught on scenes whose truth is the
whole face's box and 5 landmarks (vrfer.faces.scenes: the clean photo's detector box and landmarks, turned with the
head, eyes under the headset included), it learns both: to find the face and to place it whole.

Data (all drawn here, seeded; cached under ~/.cache/vrfer/detector-train): --scenes photos of 1-3 people and
--empty mouth-free photos (a headset alone, hands with controllers, walls: negatives) built by vrfer.faces.scenes
from the even-numbered faces-dev photos only (benchmarks/headset_scenes.py's "tune" sources; its "test" split uses
the odd-numbered photos of faces-dev, taiwanese-dev and JAFFE, none of which is seen here); those clean photos
themselves, half of them behind vrfer's flat synthetic headset (vrfer.occlusion.draw_headset, what `vrfer evaluate
--occlusion headset` draws; a fifth of the batches' images: the detector keeps what it knew, and boxes the face
behind a flat headset as it boxed the clean face); and face-free generic images (generic_negative: gradients,
noise, text, shapes, walls; 15%: without them the fine-tuned detector saw faces in logos and gradients). Each image is scaled at
random (faces ~8-450 px: the scan, the photo search and the zooms all look at faces of those sizes), cropped to
--crop pixels, flipped half the time.

Training: the network starts from the shipped graph (vrfer.faces.retinaface_net.from_onnx); RetinaFace's own loss
(anchors matched at IoU >= 0.35, the best anchor of each face always; smooth-L1 on the box (weight 2) and the
landmarks, cross-entropy with hard negatives 7:1, at least 16 a photo so that face-free photos teach too); a face
whose mouth its own headset hides, or under 8 px, is neither a positive nor a negative. AdamW, lr --lr with a cosine
decay, weight decay 5e-4. A checkpoint every 200 steps (`--resume` goes on from it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from headset_scenes import sources  # noqa: E402

from vrfer.faces.retinaface import MEAN_BGR, prior_boxes, retinaface_onnx  # noqa: E402
from vrfer.faces.retinaface_net import from_onnx, to_onnx  # noqa: E402
from vrfer.faces.headsets import noise  # noqa: E402
from vrfer.faces.scenes import background, distractor, scene  # noqa: E402
from vrfer.occlusion import draw_headset  # noqa: E402

GENERIC = {"generic": True, "faces": []}      # a pool entry drawn anew each time: generic_negative
CACHE = Path.home() / ".cache" / "vrfer" / "detector-train"
FLIP = [1, 0, 2, 4, 3]      # landmark order after a horizontal flip: eyes and mouth corners swap


# ----------------------------------------------------------------------------------------------- the photos
def build_pool(n_scenes: int, n_empty: int, seed: int, cache: Path = CACHE) -> tuple[Path, list[dict]]:
    """The training photos, drawn once and cached: their folder, and per photo its JPEG file and faces (box,
    landmarks, ignore)."""
    folder = cache / f"s{n_scenes}-e{n_empty}-seed{seed}"
    index = folder / "index.json"
    if index.exists():
        return folder, json.loads(index.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    srcs = sources("tune", limit=10_000, sets=("faces-dev",))
    rng = np.random.default_rng(seed)
    pool = []
    for i in tqdm(range(n_scenes + n_empty), desc="drawing training photos"):
        if i < n_scenes:
            img, people = scene(srcs, rng)
            faces = [{"box": list(p.box), "landmarks": np.asarray(p.landmarks).tolist(), "ignore": not p.visible}
                     for p in people]
        else:
            img, _ = distractor(rng)
            faces = []
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        pool.append({"file": path.name, "faces": faces})
    for j, s in enumerate(srcs):   # the clean photos themselves
        path = folder / f"clean{j:04d}.jpg"
        cv2.imwrite(str(path), s.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        pool.append({"file": path.name, "clean": True, "faces": [
            {"box": [float(v) for v in s.box], "landmarks": np.asarray(s.landmarks).tolist(), "ignore": False}]})
    index.write_text(json.dumps(pool))
    return folder, pool


TEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "


def generic_negative(rng: np.random.Generator) -> np.ndarray:
    """An image with no face of any kind, so that fine-tuning does not teach the detector to see faces in what
    it never saw while being fine-tuned (gradients, noise, text, shapes, walls; small ones are upscaled as
    `detect` upscales small images): a BGR uint8 image 24-640 px."""
    small = rng.random() < 0.5
    h, w = (int(rng.integers(24, 160)), int(rng.integers(24, 160))) if small else \
        (int(rng.integers(160, 480)), int(rng.integers(160, 640)))
    kind = rng.choice(["gradient", "noise", "blurred", "smooth", "text", "shapes", "wall"])
    c1, c2 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] if rng.random() < 0.5 else \
        np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(c1 + (c2 - c1) * t, (h, w, 3)).astype(np.float32)
    if kind == "noise":
        img = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    elif kind == "blurred":
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.float32), (0, 0), float(rng.uniform(1, 16)))
        img = (img - img.mean()) * rng.uniform(2, 8) + 128
    elif kind == "smooth":
        img += np.stack([noise(rng, h, w, float(rng.uniform(4, 40))) for _ in range(3)], -1) * rng.uniform(30, 120)
    elif kind == "wall":
        img = cv2.resize(background(rng, max(w, 200), max(h, 200)), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))   # OpenCV draws text on 8-bit images
    if kind in ("text", "shapes") or rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 8))):
            colour = rng.integers(0, 256, 3).tolist()
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            if kind == "text" or rng.random() < 0.3:
                word = "".join(rng.choice(list(TEXT), int(rng.integers(2, 10))))
                cv2.putText(img, word, (x - w // 3, y), int(rng.choice([0, 1, 2, 3, 4, 6, 7])),
                            float(rng.uniform(0.3, 3.0)), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
            elif rng.random() < 0.5:
                cv2.ellipse(img, (x, y), (int(rng.integers(3, w // 2 + 4)), int(rng.integers(3, h // 2 + 4))),
                            float(rng.uniform(0, 180)), 0, 360, colour, int(rng.choice([-1, 1, 3])), cv2.LINE_AA)
            else:
                pts = rng.integers(0, max(h, w), (int(rng.integers(3, 7)), 2)).astype(np.int32)
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    return img


def sample(entry: dict, folder: Path, crop: int, rng: np.random.Generator):
    """One training image (crop x crop BGR, the mean where it leaves the photo) and its faces, scaled at random."""
    generic = entry.get("generic", False)
    img = generic_negative(rng) if generic else cv2.imread(str(folder / entry["file"]), cv2.IMREAD_COLOR)
    faces = entry["faces"]
    if entry.get("clean") and rng.random() < 0.5:   # half of them behind vrfer's flat synthetic headset
        img = draw_headset(img, faces[0]["box"], style=str(rng.choice(["rounded", "plain"])),
                           color=tuple(int(c) for c in rng.integers(10, 60, 3)))
    widths = [f["box"][2] for f in faces if not f["ignore"]]
    target = math.exp(rng.uniform(math.log(8), math.log(450)))      # the first face's width after scaling
    s = target / widths[0] if widths else math.exp(rng.uniform(math.log(0.4), math.log(2.0)))
    if generic:      # its long side 0.4-1.5 crops: small images as detect's scans upscale them
        s = crop * math.exp(rng.uniform(math.log(0.4), math.log(1.5))) / max(img.shape[:2])
    s = float(np.clip(s, 0.1, 4.0 if not generic else 30.0))
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    # where the crop goes: round the first face (mostly), else anywhere
    if widths and rng.random() < 0.8:
        b = np.array(faces[0]["box"]) * s
        cx = b[0] + b[2] / 2 + rng.uniform(-0.4, 0.4) * crop
        cy = b[1] + b[3] / 2 + rng.uniform(-0.4, 0.4) * crop
        x0, y0 = int(cx - crop / 2), int(cy - crop / 2)
    else:
        x0, y0 = int(rng.uniform(min(0, w - crop), max(0, w - crop) + 1)), int(rng.uniform(min(0, h - crop), max(0, h - crop) + 1))
    out = np.empty((crop, crop, 3), np.uint8)
    out[:] = MEAN_BGR.astype(np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + crop), min(h, y0 + crop)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    boxes, lms, ignore = [], [], []
    for f in faces:
        b = np.array(f["box"], np.float32) * s - [x0, y0, 0, 0]
        cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
        if b[0] >= crop or b[1] >= crop or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
            continue                         # not in the crop at all
        boxes.append(b)
        lms.append(np.array(f["landmarks"], np.float32) * s - [x0, y0])
        # cut in half by the crop's edge, or too small: neither a face nor background
        ignore.append(f["ignore"] or b[2] < 8 or not (0 <= cx < crop and 0 <= cy < crop))
    boxes, lms = np.array(boxes, np.float32).reshape(-1, 4), np.array(lms, np.float32).reshape(-1, 5, 2)
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
        boxes[:, 0] = crop - boxes[:, 0] - boxes[:, 2]
        lms = lms[:, FLIP]
        lms[..., 0] = crop - lms[..., 0]
    if rng.random() < 0.5:   # light and contrast
        out = np.clip(out.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
    return out, boxes, lms, np.array(ignore, bool)


# ------------------------------------------------------------------------------------------------ the loss
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), both x, y, w, h."""
    ax1, ay1, bx1, by1 = a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1]
    ax2, ay2 = ax1 + a[:, None, 2], ay1 + a[:, None, 3]
    bx2, by2 = bx1 + b[None, :, 2], by1 + b[None, :, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    return inter / (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter + 1e-9)


def targets(priors: np.ndarray, boxes, lms, ignore, thr: float = 0.35):
    """Per anchor: label (1 face, 0 background, -1 neither), box and landmark regression targets (RetinaFace's
    encoding: centre offsets in 0.1 anchor sizes, log sizes over 0.2)."""
    n = len(priors)
    label = np.zeros(n, np.int64)
    loc, lm = np.zeros((n, 4), np.float32), np.zeros((n, 10), np.float32)
    if not len(boxes):
        return label, loc, lm
    pri_xywh = np.hstack([priors[:, :2] - priors[:, 2:] / 2, priors[:, 2:]])
    ious = iou_matrix(boxes, pri_xywh)                       # (G, A)
    best_gt = ious.argmax(0)
    best_iou = ious.max(0)
    for g in range(len(boxes)):                              # every face keeps its best anchor
        a = ious[g].argmax()
        if ious[g, a] >= 0.1:
            best_gt[a], best_iou[a] = g, 1.0
    pos = best_iou >= thr
    label[pos] = 1
    label[pos & ignore[best_gt]] = -1
    label[(best_iou >= 0.2) & ~pos] = -1                     # half-overlaps: not background either
    near_ignored = (ious[ignore].max(0) >= 0.2) if ignore.any() else np.zeros(n, bool)
    label[near_ignored & (label == 0)] = -1
    g = boxes[best_gt]
    centre, wh = g[:, :2] + g[:, 2:] / 2, np.maximum(g[:, 2:], 1.0)
    loc[:] = np.hstack([(centre - priors[:, :2]) / (0.1 * priors[:, 2:]), np.log(wh / priors[:, 2:]) / 0.2])
    lm[:] = ((lms[best_gt] - priors[:, None, :2]) / (0.1 * priors[:, None, 2:])).reshape(n, 10)
    return label, loc, lm


def loss_fn(out, label, loc_t, lm_t, neg_ratio: int = 7, min_neg: int = 32):
    loc, conf, lms = out
    pos = label == 1
    n_pos = max(1, int(pos.sum()))
    loss_loc = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum") / n_pos
    loss_lm = F.smooth_l1_loss(lms[pos], lm_t[pos], reduction="sum") / n_pos
    ce = F.cross_entropy(conf.reshape(-1, 2), pos.long().reshape(-1), reduction="none").reshape(label.shape)
    hard = ce.detach().clone()
    hard[label != 0] = -1
    keep = torch.zeros_like(pos)
    for i in range(label.shape[0]):                          # hard negatives, per image
        k = min(int((label[i] == 0).sum()), max(min_neg, neg_ratio * int(pos[i].sum())))
        keep[i, hard[i].topk(k).indices] = True
    loss_conf = ce[pos | keep].sum() / n_pos
    return 2.0 * loss_loc + loss_conf + loss_lm, (loss_loc.item(), loss_conf.item(), loss_lm.item())


# --------------------------------------------------------------------------------------------- training
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=480)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=2400)
    ap.add_argument("--empty", type=int, default=400)
    ap.add_argument("--clean-share", type=float, default=0.2, help="share of a batch's images that are clean photos")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the drawn photos are kept")
    ap.add_argument("--generic-share", type=float, default=0.15,
                    help="share of a batch's images that are face-free generic images (generic_negative)")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    folder, pool = build_pool(a.scenes, a.empty, a.seed, a.cache)
    drawn = [e for e in pool if not e.get("clean")]
    clean = [e for e in pool if e.get("clean")]

    net = from_onnx(retinaface_onnx("original")).train()
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    step, ckpt = 0, a.out / "last.pt"
    if a.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
    priors = prior_boxes(a.crop, a.crop)
    log = (a.out / "log.jsonl").open("a")
    bar = tqdm(total=a.steps, initial=step, desc="fine-tuning the detector")
    while step < a.steps:
        rng = np.random.default_rng([a.seed, step])          # the batch depends on the step only: resumable
        imgs, labels, locs, lmts = [], [], [], []
        for _ in range(a.batch):
            r = rng.random()
            entry = clean[rng.integers(len(clean))] if r < a.clean_share else \
                GENERIC if r < a.clean_share + a.generic_share else drawn[rng.integers(len(drawn))]
            img, boxes, lms, ignore = sample(entry, folder, a.crop, rng)
            lab, loc, lm = targets(priors, boxes, lms, ignore)
            imgs.append((img.astype(np.float32) - MEAN_BGR).transpose(2, 0, 1))
            labels.append(lab), locs.append(loc), lmts.append(lm)
        x = torch.from_numpy(np.stack(imgs))
        loss, parts = loss_fn(net(x, logits=True), torch.from_numpy(np.stack(labels)),
                              torch.from_numpy(np.stack(locs)), torch.from_numpy(np.stack(lmts)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        log.write(json.dumps({"step": step, "loss": loss.item(), "loc": parts[0], "conf": parts[1], "lm": parts[2],
                              "lr": sched.get_last_lr()[0], "time": time.time()}) + "\n")
        if step % 200 == 0 or step == a.steps:
            log.flush()
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step},
                       ckpt)
    to_onnx(net, a.out / "retinaface_mnet025.onnx")
    print(f"wrote {a.out / 'retinaface_mnet025.onnx'} after {step} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
