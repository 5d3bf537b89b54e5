"""Score fluorescence nucleus segmenters on labelled grayscale images: pooled F1@0.5, mean AJI, PQ.

A segmenter here is any function gray (H,W) -> int32 labels (H,W). `model_segmenter` makes one
from the fluorescence model (a TorchScript file or the module in training), zooming each image so
its nuclei are the model's reference size: by the true median diameter (as a known µm/px would),
by the classical estimate, or by a second pass that re-measures the model's own nuclei.
"""

from __future__ import annotations

import time
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import torch

from wsi_assets.segmentation.classical_fluorescence import estimate_nucleus_diameter
from wsi_assets.segmentation.image import resize_labels
from wsi_assets.segmentation.metrics import aggregated_jaccard_index, match_instances, panoptic_quality
from wsi_assets.training.fluorescence_data import FluoImage, median_diameter

Segment = Callable[[FluoImage], np.ndarray]
SCALE_SOURCES = ("true", "estimated", "two-pass", "none")


def predict(module: Callable[[torch.Tensor], torch.Tensor], gray: np.ndarray, zoom: float) -> np.ndarray:
    """Labels of one 2-D image at its own size, segmented by `module` after zooming by `zoom`."""
    image = np.asarray(gray, np.float32)
    if abs(zoom - 1) > 1e-3:
        size = (max(1, round(image.shape[1] * zoom)), max(1, round(image.shape[0] * zoom)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None].expand(1, 3, -1, -1)
    with torch.inference_mode():
        labels = module(x)[0, 0].cpu().numpy().astype(np.int32)
    return labels if labels.shape == gray.shape else resize_labels(labels, gray.shape)


def model_segmenter(module, reference_diameter: float, scale: str = "true") -> Segment:
    """A segmenter of FluoImages from the fluorescence module; `scale` says where the zoom comes from."""
    if scale not in SCALE_SOURCES:
        raise ValueError(f"scale must be one of {SCALE_SOURCES}, got {scale!r}")

    def segment(item: FluoImage) -> np.ndarray:
        if scale == "none":
            return predict(module, item.gray, 1.0)
        if scale == "true":
            return predict(module, item.gray, reference_diameter / item.diameter)
        estimate = estimate_nucleus_diameter(item.gray) or reference_diameter
        labels = predict(module, item.gray, reference_diameter / estimate)
        if scale == "two-pass" and labels.max() > 0:
            labels = predict(module, item.gray, reference_diameter / median_diameter(labels))
        return labels

    return segment


def score_images(segment: Segment, items: list[FluoImage]) -> pd.DataFrame:
    """One row per image: experiment, counts, tp/fp/fn, F1, AJI, PQ, seconds."""
    rows = []
    for item in items:
        start = time.perf_counter()
        pred = segment(item)
        seconds = time.perf_counter() - start
        m = match_instances(pred, item.labels, 0.5)
        rows.append(
            {
                "experiment": item.experiment,
                "stem": item.stem,
                "n_true": int(item.labels.max()),
                "n_pred": int(pred.max()),
                "tp": m.tp,
                "fp": m.fp,
                "fn": m.fn,
                "f1": 2 * m.tp / max(2 * m.tp + m.fp + m.fn, 1),
                "aji": aggregated_jaccard_index(pred, item.labels),
                "pq": panoptic_quality(pred, item.labels)["pq"],
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


def summary(scores: pd.DataFrame) -> dict:
    """Pooled F1@0.5 over all nuclei, per-image means of AJI and PQ."""
    tp, fp, fn = (int(scores[c].sum()) for c in ("tp", "fp", "fn"))
    return {
        "images": len(scores),
        "true": int(scores["n_true"].sum()),
        "pred": int(scores["n_pred"].sum()),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "aji": float(scores["aji"].mean()),
        "pq": float(scores["pq"].mean()),
        "seconds": float(scores["seconds"].sum()),
    }


def by_experiment(scores: pd.DataFrame) -> dict[str, dict]:
    return {name: summary(group) for name, group in scores.groupby("experiment")}


FG_THRESHOLDS = (0.4, 0.5, 0.6)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the seed is what splits touching nuclei
MIN_AREAS = (8, 16, 32)  # model pixels; a reference nucleus is ~200


def tune_postprocessing(net, items: list[FluoImage], reference_diameter: float, per_experiment: int = 3) -> tuple[dict, dict]:
    """Foreground and seed thresholds and minimum area scoring best (mean of F1@0.5, AJI and PQ,
    each experiment counted equally) on the first `per_experiment` images of each experiment in
    `items` — training images, so the held-out figures stay untouched by the choice.
    Returns the settings and the score table {(fg, seed, min_area): score}."""
    import itertools

    from wsi_assets.training.fluorescence_model import FluorescenceNucleiModel
    from wsi_assets.training.postprocess import instances_from_maps

    chosen: list[FluoImage] = []
    counts: dict[str, int] = {}
    for item in items:
        if counts.get(item.experiment, 0) < per_experiment:
            counts[item.experiment] = counts.get(item.experiment, 0) + 1
            chosen.append(item)
    model = FluorescenceNucleiModel(net.eval())
    totals: dict[tuple, dict[str, list[float]]] = {}
    for item in chosen:
        zoom = reference_diameter / item.diameter
        size = (max(1, round(item.gray.shape[1] * zoom)), max(1, round(item.gray.shape[0] * zoom)))
        image = cv2.resize(item.gray.astype(np.float32), size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
        with torch.inference_mode():
            maps = model.maps(torch.from_numpy(image)[None, None].expand(1, 3, -1, -1))
            for fg, seed in itertools.product(FG_THRESHOLDS, SEED_THRESHOLDS):
                every = instances_from_maps(maps[:, :1], maps[:, 1:2], fg, seed, 24, 1)[0, 0].numpy()
                areas = np.bincount(every.ravel())
                for min_area in MIN_AREAS:
                    # dropping the small ones afterwards gives what the module's min_area gives, one run per pair
                    keep = areas >= min_area
                    keep[0] = False
                    labels = (np.cumsum(keep) * keep).astype(np.int32)[every]
                    totals.setdefault((fg, seed, min_area), {}).setdefault(item.experiment, []).append(
                        _score(resize_labels(labels, item.gray.shape) if labels.shape != item.gray.shape else labels, item.labels)
                    )
    means = {key: float(np.mean([np.mean(v) for v in per.values()])) for key, per in totals.items()}
    (fg, seed, min_area), _ = max(means.items(), key=lambda kv: kv[1])
    return {"fg_threshold": fg, "seed_threshold": seed, "min_area": min_area}, means


def _score(labels: np.ndarray, true: np.ndarray) -> float:
    """Mean of F1@0.5, AJI and PQ of one image."""
    m = match_instances(labels, true, 0.5)
    f1 = 2 * m.tp / max(2 * m.tp + m.fp + m.fn, 1)
    return (f1 + aggregated_jaccard_index(labels, true) + panoptic_quality(labels, true)["pq"]) / 3
