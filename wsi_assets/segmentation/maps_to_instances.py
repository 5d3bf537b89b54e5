"""The learned model's post-processing (`training/postprocess.py`) in NumPy and OpenCV, for CPU runtimes.

When the network runs outside torch (OpenVINO, ONNX Runtime), its two maps come back as arrays,
and the torch post-processing would cost ~0.3 CPU-s a 1152² tile in max-pool rounds. Here the
same steps use OpenCV's connected components and 3×3 dilation instead, with the *same output*:
ids follow the torch code's convention (a component's id is its last pixel in raster order, plus
an offset) because that order decides which seed wins a contested pixel and how labels are
numbered. `test_cpu_runtimes.py` checks the two agree label for label on real tiles.
"""

from __future__ import annotations

import cv2
import numpy as np

_KERNEL = np.ones((3, 3), np.uint8)


def _components(mask: np.ndarray, offset: int, dtype) -> np.ndarray:
    """8-connected components of a bool mask: id = offset + 1 + flat index of its last pixel, else 0."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:
        return np.zeros(mask.shape, dtype)
    width = mask.shape[1]
    bottom = stats[1:, cv2.CC_STAT_TOP] + stats[1:, cv2.CC_STAT_HEIGHT] - 1
    # The last pixel of a component lies in its bottom row: the rightmost pixel of it there.
    rows = labels[bottom] == np.arange(1, count)[:, None]
    last_col = width - 1 - np.argmax(rows[:, ::-1], axis=1)
    table = np.zeros(count, dtype)
    table[1:] = offset + 1 + bottom.astype(np.int64) * width + last_col
    return table[labels]


def _grow_into(ids: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Geodesic dilation as in torch: each round, unlabelled mask pixels take their 3×3 maximum."""
    free = (ids == 0) & mask
    for _ in range(iterations):
        grown = np.where(free, cv2.dilate(ids, _KERNEL, borderType=cv2.BORDER_CONSTANT, borderValue=0), ids)
        if np.array_equal(grown, ids):
            break
        ids = grown
        free &= ids == 0
    return ids


def instances_from_maps(
    foreground: np.ndarray,
    distance: np.ndarray,
    fg_threshold: float = 0.5,
    seed_threshold: float = 0.5,
    grow_iterations: int = 24,
    min_area: int = 8,
) -> np.ndarray:
    """Instance labels int32 (H,W), 1..n, from foreground probability and normalised distance (H,W)."""
    height, width = foreground.shape
    n = height * width
    # float32 holds the ids exactly up to 2**24, as in the torch code; cv2.dilate takes floats
    dtype = np.float32 if 2 * n + 1 < 2**24 else np.float64
    fg = foreground > fg_threshold
    seeds = fg & (distance > seed_threshold)
    ids = _grow_into(_components(seeds, 0, dtype), fg, grow_iterations)
    leftover = fg & (ids == 0)
    if leftover.any():
        ids = ids + _components(leftover, n, dtype)
    flat = ids.astype(np.int64)
    counts = np.bincount(flat.ravel(), minlength=1)
    keep = counts >= min_area
    keep[0] = False
    new_ids = (np.cumsum(keep) * keep).astype(np.int32)
    return new_ids[flat]
