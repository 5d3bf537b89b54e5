"""Dropping instances whose colour no stained nucleus has: ink, dark debris and glass.

The learned model outlines dark, compact blobs whatever their hue, so blue-green ink and debris
became "nuclei" (12 in the debris strip of CMU-1-Small-Region). Haematoxylin absorbs green at
least as strongly as red, so a nucleus's mean green never exceeds its mean red by much. Over the
40,361 annotated nuclei of ../shared/data/nuclei_train (MoNuSeg, CoNSeP, NuCLS, DSB H&E) the
largest excess was 9.4 levels, and 2 in 10,000 had all three channel means above 215 (pale glass
and bubbles sit at 220-240). `python benchmarks/colour_gate.py` reproduces these figures.
"""

from __future__ import annotations

import numpy as np

GREEN_OVER_RED_MAX = 15.0  # mean G − mean R above this: ink or debris, not haematoxylin
GLASS_MIN_LEVEL = 215.0  # every channel's mean above this: glass or a bubble, not a nucleus


def non_nuclear_ids(labels: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Ids (sorted) of the instances in `labels` (H,W) whose mean colour in `rgb` (H,W,3) rules out a nucleus."""
    flat = labels.ravel()
    size = int(flat.max()) + 1 if flat.size else 1
    area = np.bincount(flat, minlength=size).astype(np.float64)
    area[area == 0] = 1.0
    means = [np.bincount(flat, weights=rgb[..., c].ravel(), minlength=size) / area for c in range(3)]
    red, green, blue = means
    bad = (green - red > GREEN_OVER_RED_MAX) | (np.minimum(np.minimum(red, green), blue) > GLASS_MIN_LEVEL)
    bad[0] = False
    return np.flatnonzero(bad)


def without_non_nuclear(labels: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """`labels` with the instances of `non_nuclear_ids` set to background (ids not renumbered)."""
    bad = non_nuclear_ids(labels, rgb)
    if bad.size == 0:
        return labels
    drop = np.zeros(int(labels.max()) + 1, bool)
    drop[bad] = True
    return np.where(drop[labels], 0, labels)
