"""Batched inference on face crops: the one place that turns crops into class probabilities."""

from __future__ import annotations

import numpy as np
import torch

from .preprocess import prepare
from .representation import logits_and_features


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


class TorchClassifier:
    """Face crops -> probabilities with a PyTorch model. Same interface as the ONNX backend:
    `.cfg` (the model's ModelConfig) and `.predict_proba(crops)`, crops uint8 (N, H, W) square faces."""

    has_representation = True       # logits_and_features works (as for an ONNX graph with that output)

    def __init__(self, model, tta_flip: bool = False):
        if not hasattr(model, "cfg"):     # names are read once, by vrfer.inference.loader (load_classifier(name, "torch"))
            raise TypeError("TorchClassifier takes a model object with a vrfer config (.cfg); for a model name use "
                            "vrfer.inference.loader.load_classifier(name, 'torch')")
        self.model = model.eval()
        self.cfg = model.cfg
        self.tta_flip = tta_flip

    def predict_proba(self, crops) -> np.ndarray:
        return predict_proba(self.model, crops, tta_flip=self.tta_flip)

    def logits_and_features(self, crops) -> tuple[np.ndarray, np.ndarray]:
        """uint8 face crops -> (logits (N, C), representation (N, D)) (vrfer.inference.representation), as the ONNX
        backend gives them: what a calibration profile is applied to."""
        return logits_and_features(self.model, np.ascontiguousarray(crops))
