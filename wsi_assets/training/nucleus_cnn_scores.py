"""Scoring the nucleus classifier network on the held-out CoNSeP tiles, for training's log and the card."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.nucleus_cnn import CROP
from wsi_assets.training.cell_classifier_training import per_class_f1
from wsi_assets.training.nucleus_cnn_cache import ANNOTATED, FOUND, centre


def predict(net: nn.Module, windows: np.ndarray, crop: int = CROP, batch: int = 512) -> np.ndarray:
    """Class indices of (N,4,CACHE,CACHE) windows, read at their centre crop."""
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            part = torch.from_numpy(np.ascontiguousarray(centre(windows[start : start + batch], crop)).astype(np.float32))
            out.append(net(part).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def held_out_scores(net: nn.Module, cache: dict, held: np.ndarray) -> dict:
    """Per-class F1 (nuclei given, classification alone) on the held-out tiles, per outline source."""
    names = np.asarray(CLASS_NAMES, object)
    scores = {}
    for label, outline in (("annotated", ANNOTATED), ("found", FOUND)):
        rows = np.flatnonzero(held & (cache["outlines"] == outline))
        if len(rows):
            truth, predicted = names[cache["classes"][rows]], names[predict(net, cache["crops"][rows])]
            scores[label] = {
                **per_class_f1(truth, predicted),
                "accuracy": round(float(np.mean(truth == predicted)), 4),
                "nuclei": int(len(rows)),
            }
    return scores
