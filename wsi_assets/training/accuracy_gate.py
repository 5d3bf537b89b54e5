"""The accuracy gate for inference variants: a faster runtime or precision may not cost accuracy.

A variant (another runtime, precision, or post-processing) passes when, on every dataset of the
held-out split and over all of it, none of F1@0.5, AJI and PQ falls more than half a point
(0.005) below the reference. Measured: OpenVINO and ONNX Runtime float32 score exactly as torch;
calibrated static int8 fails (MoNuSeg F1 -1.4 points with OpenVINO), so it is not offered.
"""

from __future__ import annotations

import pandas as pd

from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.training.data import LabelledImage
from wsi_assets.training.evaluate import score, summarise

TOLERANCE = 0.005
METRICS = ("F1@0.5", "AJI", "PQ")


def held_out_summary(segmenter: Segmenter, images: list[LabelledImage]) -> pd.DataFrame:
    """F1@0.5, AJI and PQ per dataset and for "all", as `training.evaluate.summarise` gives them."""
    scores, _ = score(segmenter, images)
    return summarise(scores)


def gate_failures(reference: pd.DataFrame, variant: pd.DataFrame, tolerance: float = TOLERANCE) -> list[str]:
    """One line per (dataset, metric) where `variant` scores more than `tolerance` below `reference`."""
    failures = []
    for dataset in reference.index:
        if dataset not in variant.index:
            failures.append(f"{dataset}: not scored by the variant")
            continue
        for metric in METRICS:
            before, after = float(reference.at[dataset, metric]), float(variant.at[dataset, metric])
            if after < before - tolerance:
                failures.append(f"{dataset} {metric}: {after:.4f} against {before:.4f} (more than {tolerance} lower)")
    return failures
