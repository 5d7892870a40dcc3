"""Batched inference on face crops: the one place that turns crops into class probabilities."""

from __future__ import annotations

import numpy as np
import torch

from .preprocess import prepare


@torch.inference_mode()
def predict_proba(model, images, batch_size: int = 512, tta_flip: bool = False) -> np.ndarray:
    """uint8 face crops (N, H, W) -> probabilities (N, 8). tta_flip averages with the mirrored face."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        p = torch.softmax(model(prepare(chunk, model.cfg).to(device)).float(), 1)
        if tta_flip:
            p = (p + torch.softmax(model(prepare(chunk, model.cfg, flip_all=True).to(device)).float(), 1)) / 2
        out.append(p.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.cfg.classes)), np.float32)
