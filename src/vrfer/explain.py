"""Grad-CAM explanations, drawn like Figure 1 of Georgescu & Ionescu (2019).

Grad-CAM (Selvaraju et al. 2017) with captum's LayerGradCam on the model's last convolution, upsampled
to the model input with LayerAttribution.interpolate (bilinear), then mapped back onto the face crop.
The rows a headset hides carry no information for the model: for a visible-half model they are not
even part of its input, for an upper-occluded one they are constant black. Their heat is set to 0
and the drawing shows them dark, so the picture shows only what the model can have used.

    >>> from vrfer.explain import explain, render
    >>> heat, probs = explain("vrfer-lower", crop)     # crop: uint8 (H, W) square face
    >>> render(crop, heat, probs, cfg, "face_gradcam.png")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import VrferError
from .inference.loader import torch_model
from .occlusion import visible_rows
from .inference.preprocess import prepare
from .results import DECIMALS, FacePrediction
from .classes import class_name

DISPLAY = 192  # pixels per panel side in the PNG


def last_conv(model: nn.Module) -> nn.Module:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise VrferError(f"model {model.cfg.name!r} has no convolution layer for Grad-CAM")
    return convs[-1]


def hidden_rows(cfg, height: int) -> int:
    """How many top rows of a crop of `height` rows the model does not see (0 for a full-face model)."""
    if cfg.input_mode == "full":
        return 0
    return int(round(visible_rows(cfg.image_size, cfg.occlusion) * height / cfg.image_size))


def _target_index(target, cfg, probs: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(probs))
    if isinstance(target, str):
        target = target if target in cfg.classes else class_name(target)
        if target not in cfg.classes:
            raise VrferError(f"unknown class {target!r}; classes: {', '.join(cfg.classes)}")
        return cfg.classes.index(target)
    t = int(target)
    if not 0 <= t < len(cfg.classes):
        raise VrferError(f"class index {t} out of range 0-{len(cfg.classes) - 1}")
    return t


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: nn.Module | None = None) -> torch.Tensor:
    """Grad-CAM for model input x (N, C, h, w) -> (N, h, w), >= 0, in the model input's coordinates."""
    from captum.attr import LayerAttribution, LayerGradCam
    layer = layer if layer is not None else last_conv(model)
    with torch.enable_grad():
        attr = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return attr.detach()[:, 0].clamp_min(0)


def explain(model, crop, target=None, layer: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One face crop -> (heat map (H, W) float32 in [0, 1] on the crop, class probabilities (8,)).

    model: nn.Module with .cfg, registry name or .safetensors path. crop: uint8 (H, W) square face.
    target: class to explain (index or name); default the predicted class. The rows the model does not
    see (the headset's) get heat 0.
    """
    model = torch_model(model)
    cfg = model.cfg
    crop = np.asarray(crop)
    if crop.ndim != 2 or min(crop.shape) < 2:
        raise VrferError(f"explain needs one grayscale crop (H, W), got shape {crop.shape}")
    h, w = crop.shape
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = prepare(crop[None], cfg).to(device)
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), 1)[0].cpu().numpy()
        cam = grad_cam(model, x, _target_index(target, cfg, probs), layer)[0].float().cpu()
    finally:
        model.train(was_training)

    top = hidden_rows(cfg, h)
    heat = torch.zeros(h, w)
    if cfg.input_mode == "visible-half":  # the input is the crop's rows [top:], resized
        heat[top:] = F.interpolate(cam[None, None], size=(h - top, w), mode="bilinear", align_corners=False)[0, 0]
    else:
        heat[:] = F.interpolate(cam[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        heat[:top] = 0  # upper-occluded: constant black there, no information
    heat = np.nan_to_num(heat.numpy(), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    peak = float(heat.max())
    heat = (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)
    return heat, probs.astype(np.float32)


# ------------------------------------------------------------------------------------------------ drawing

def _resize_float(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def panels(crop, heat, cfg, alpha: float = 0.5, size: int = DISPLAY):
    """The two pictures of `render` as float RGB (size, size, 3) in [0, 1], and the hidden row count.

    face: the crop, its hidden upper rows darkened; overlay: the same with the heat map (jet colours)
    blended in on the visible rows only.
    """
    from matplotlib import colormaps
    from PIL import Image

    crop = np.asarray(crop)
    h = crop.shape[0]
    gray = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((size, size), Image.BICUBIC),
                      np.float32) / 255.0
    heat_d = np.clip(_resize_float(np.asarray(heat, np.float32), size), 0, 1)
    top = int(round(hidden_rows(cfg, h) * size / h))
    face = np.repeat(gray[..., None], 3, axis=2)
    face[:top] *= 0.25                                   # the headset's part: dark
    over = face.copy()
    color = colormaps["jet"](heat_d)[..., :3].astype(np.float32)
    over[top:] = (1 - alpha) * face[top:] + alpha * color[top:]
    return np.clip(face, 0, 1), np.clip(over, 0, 1), top


def render(crop, heat, probs, cfg, path=None, title: str | None = None, alpha: float = 0.5, target=None):
    """Draw [face as the model gets it | Grad-CAM overlay] with the class the heat map shows (`target`,
    default the most probable) and its probability as the title, like the paper's Fig. 1.

    The hidden upper rows are shown dark in both panels and carry no heat. Returns the PIL image;
    writes a PNG when `path` is given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    face, over, top = panels(crop, heat, cfg, alpha)
    probs = np.asarray(probs)
    k = _target_index(target, cfg, probs)
    order = [i for i in np.argsort(probs)[::-1] if i != k]
    fig = Figure(figsize=(4.0, 2.55), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.80, bottom=0.10, wspace=0.04)
    for ax, img, name in zip(axes, (face, over), ("input", "Grad-CAM")):
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name, fontsize=8, pad=2)
        if top:
            ax.axhline(top - 0.5, color="white", lw=0.8, ls="--")
            ax.text(DISPLAY / 2, top / 2, "hidden\n(headset)" if cfg.input_mode != "full" else "",
                    color="white", ha="center", va="center", fontsize=8, alpha=0.8)
    fig.suptitle(title or f"{cfg.classes[k]}  {probs[k]:.0%}", fontsize=11, fontweight="bold", y=0.97)
    fig.text(0.5, 0.03, "   ".join(f"{cfg.classes[i]} {probs[i]:.0%}" for i in order[:3]),
             ha="center", va="bottom", fontsize=7, color="0.3")
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    out = Image.fromarray(rgba[..., :3].copy())
    if path is not None:
        try:
            out.save(str(path), format="PNG")
        except OSError as e:
            raise VrferError(f"{path}: cannot write PNG ({e.strerror or e})") from None
    return out


# ------------------------------------------------------------------------------------------ files and faces

def explain_image(pipeline, path, out_dir, target=None, taken: set | None = None) -> list[dict]:
    """Explain every face of one image the way `vrfer predict` sees it: the same faces, crops and
    probabilities (vrfer.inference.pipeline.Pipeline, torch backend); write `<stem>_gradcam.png` (or `_face<i>`).

    Returns one dict per face: predict's JSON fields (vrfer.results.FacePrediction.to_dict) plus
    `explained` (the class the heat map shows: `target`, else the predicted one), its probability
    `explained_score` and `png`. Raises VrferError for an unreadable image, NoFaceError for no face."""
    model = pipeline.classifier.model
    cfg = pipeline.cfg
    faces, crops, probs = pipeline.run(path)      # the path as given: Path("") would be the working folder
    path, out_dir = Path(path), Path(out_dir)
    taken = set() if taken is None else taken
    results = []
    for i, (f, crop, p) in enumerate(zip(faces, crops, probs)):
        stem = path.stem + (f"_face{i + 1}" if len(crops) > 1 else "")
        name, n = f"{stem}_gradcam.png", 2
        while name in taken:
            name, n = f"{stem}_{n}_gradcam.png", n + 1
        taken.add(name)
        k = _target_index(target, cfg, p)
        heat, _ = explain(model, crop, k)
        out = out_dir / name
        render(crop, heat, p, cfg, out, target=k)
        d = FacePrediction.of(f.int_box(), p, cfg.classes, face_score=f.score if pipeline.face == "detect" else None,
                              source=str(path), square=f.square).to_dict()
        d.update(explained=cfg.classes[k], explained_score=round(float(p[k]), DECIMALS), png=str(out))
        results.append(d)
    return results
