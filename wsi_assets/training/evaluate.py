"""Score a segmenter on labelled images: F1@0.5, AJI and PQ per image and per dataset.

Each image is segmented with `segment_image` at its own µm/px (so resampled to the model's
µm/px and back) and compared with its labels at native resolution.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wsi_assets.core.images import fit_within
from wsi_assets.segmentation.image import resample_image, resize_labels, segment_image
from wsi_assets.segmentation.metrics import aggregated_jaccard_index, f1_at_iou, panoptic_quality
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.training import split
from wsi_assets.training.data import LabelledImage, list_labelled_folder, load_images


def labelled_images(folder: Path, mpp: float | None = None, held_out_only: bool = True) -> list[LabelledImage]:
    """Held-out images of a nuclei_train folder, or every pair of any other labelled folder."""
    table = list_labelled_folder(folder, mpp)
    if held_out_only and (Path(folder) / "manifest.csv").exists():
        keep = [split.is_held_out(d, s) for d, s in zip(table["dataset"], table["stem"])]
        table = table[np.array(keep, bool)]
    return load_images(folder, table)


def downsampled(item: LabelledImage, factor: float, suffix: str) -> LabelledImage:
    """The image as a scanner at 1/`factor` the magnification would see it (e.g. 40x -> 20x)."""
    rgb = resample_image(item.rgb, 1.0 / factor)
    labels = resize_labels(item.labels, rgb.shape[:2])
    return replace(item, dataset=item.dataset + suffix, rgb=rgb, labels=labels, mpp=item.mpp * factor)


def score(segmenter: Segmenter, images: list[LabelledImage]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per-image scores, and the predictions by stem."""
    rows, predictions = [], {}
    for item in images:
        start = time.perf_counter()
        pred = segment_image(item.rgb, item.mpp, segmenter)
        seconds = time.perf_counter() - start
        f1 = f1_at_iou(pred, item.labels, 0.5)
        rows.append(
            {
                "dataset": item.dataset,
                "stem": item.stem,
                "mpp": item.mpp,
                "mpp_estimated": item.mpp_estimated,
                "n_true": int(item.labels.max()),
                "n_pred": int(pred.max()),
                "tp": f1["tp"],
                "fp": f1["fp"],
                "fn": f1["fn"],
                "f1": f1["f1"],
                "aji": aggregated_jaccard_index(pred, item.labels),
                "pq": panoptic_quality(pred, item.labels)["pq"],
                "seconds": seconds,
            }
        )
        predictions[f"{item.dataset}/{item.stem}"] = pred
    return pd.DataFrame(rows), predictions


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and overall: pooled F1@0.5 (all nuclei together), per-image means of AJI and PQ."""

    def one(group: pd.DataFrame) -> pd.Series:
        tp, fp, fn = group["tp"].sum(), group["fp"].sum(), group["fn"].sum()
        return pd.Series(
            {
                "images": len(group),
                "true": int(group["n_true"].sum()),
                "pred": int(group["n_pred"].sum()),
                "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1),
                "F1@0.5": 2 * tp / max(2 * tp + fp + fn, 1),
                "AJI": group["aji"].mean(),
                "PQ": group["pq"].mean(),
            }
        )

    table = scores.groupby("dataset")[list(scores.columns)].apply(one)
    table.loc["all"] = one(scores)
    return table


def overlay(rgb: np.ndarray, pred: np.ndarray, true: np.ndarray | None = None) -> np.ndarray:
    """Outlines on the image: predicted nuclei yellow, true nuclei (if given) green."""
    out = rgb.copy()
    if true is not None:
        out[_edges(true)] = (0, 200, 0)
    out[_edges(pred)] = (255, 230, 0)
    return out


def _edges(labels: np.ndarray) -> np.ndarray:
    values = labels.astype(np.float32)
    square = np.ones((3, 3), np.uint8)
    return (labels > 0) & ((cv2.dilate(values, square) != values) | (cv2.erode(values, square) != values))


def overlay_strip(images: list[LabelledImage], predictions: dict[str, np.ndarray], count: int = 4, side: int = 256) -> np.ndarray:
    """The first `count` images with predicted (yellow) and true (green) outlines, side by side."""
    panels = []
    for item in images[:count]:
        drawn = overlay(item.rgb, predictions[f"{item.dataset}/{item.stem}"], item.labels)
        panels.append(fit_within(drawn, side))
    height = max(p.shape[0] for p in panels)
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels], axis=1)
