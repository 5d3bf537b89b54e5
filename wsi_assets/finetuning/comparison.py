"""Before and after on held-out reviewed tiles: F1 at IoU 0.5, AJI and PQ, and whether the new model is better."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.finetuning.review_tiles import ReviewedTile
from wsi_assets.finetuning.slide_grid import model_labels
from wsi_assets.segmentation.metrics import (
    aggregated_jaccard_index,
    f1_at_iou,
    panoptic_quality,
)
from wsi_assets.segmentation.slide import TilingSettings

MIN_GAIN = 0.01  # of the mean of F1, AJI and PQ: below this a "gain" is noise of a few cells


def score_model(model_file: Path, tiles: list[ReviewedTile], tiling: TilingSettings = TilingSettings(), progress=None) -> dict:
    """The model's F1, AJI and PQ on the tiles (each weighted by its reviewed cells), and their mean.

    Tiles read from a slide are segmented as process_slide segments it (`tiling`: its grid), so a
    review that is the model's own export scores near 1; tiles given as pixels alone, on their own.
    `progress(done, total)` follows the grid tiles segmented.
    """
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    segmenter = TorchScriptSegmenter(str(model_file), device="cpu")
    if tiles and all(t.source is not None for t in tiles):
        predictions = model_labels(segmenter, tiles, tiling, progress)
    else:
        predictions = [np.asarray(segmenter.segment_batch(tile.rgb[np.newaxis]))[0].astype(np.int32) for tile in tiles]
    per_tile, weights = [], []
    for tile, predicted in zip(tiles, predictions):
        per_tile.append(
            (
                f1_at_iou(predicted, tile.labels)["f1"],
                aggregated_jaccard_index(predicted, tile.labels),
                panoptic_quality(predicted, tile.labels)["pq"],
            )
        )
        weights.append(tile.cells)
    f1, aji, pq = (float(np.average(column, weights=weights)) for column in zip(*per_tile))
    return {
        "f1": round(f1, 4),
        "aji": round(aji, 4),
        "pq": round(pq, 4),
        "score": round((f1 + aji + pq) / 3, 4),
        "tiles": len(tiles),
        "cells": int(sum(weights)),
    }


def verdict(before: dict, after: dict, min_gain: float = MIN_GAIN) -> tuple[bool, str]:
    """(better, one line saying why) from the two scores on the same held-out tiles."""
    gain = after["score"] - before["score"]
    figures = f"mean of F1/AJI/PQ {before['score']:.3f} -> {after['score']:.3f} on {after['tiles']} held-out tiles ({after['cells']} reviewed cells)"
    if gain >= min_gain:
        return True, f"better: {figures}"
    return False, f"not better (needs a gain of at least {min_gain}): {figures}"
