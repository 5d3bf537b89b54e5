"""Segmenting the nuclear channel of a stack, (t, z) plane by plane, into a label image's level 0.

Planes are read from the stack's OME-Zarr copy a block of Z planes at a time (its chunks hold
several planes, so reading one plane alone would decode the others too). A plane whose block
fits the budget is segmented whole; a larger one in overlapping tiles, each nucleus kept by the
tile whose core holds its centre and painted only where no earlier tile painted: memory
follows the budget, not the plane. Ids are unique over the whole stack (`next_id` runs on), so
linking planes and time points never has to renumber.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import zarr
from scipy import ndimage as ndi

from wsi_assets.stacks.blocks import yx_regions

PlaneSegmenter = Callable[[np.ndarray], np.ndarray]  # 2-D plane -> int labels (0 background, 1..n)
BLOCK_BUDGET_BYTES = 128 * 2**20
MIN_CORE = 1024
ALIGN = 512
# A nucleus up to this wide (µm) lies whole in a tile's margin around its core; 64 px without µm/px.
MARGIN_UM = 25.0
DEFAULT_MARGIN_PX = 64


def margin_px(xy_um: float | None) -> int:
    return min(ALIGN, math.ceil(MARGIN_UM / xy_um)) if xy_um else DEFAULT_MARGIN_PX


def segmentation_core(
    height: int, width: int, planes: int, itemsize: int, margin: int, budget: int = BLOCK_BUDGET_BYTES
) -> tuple[int, int]:
    """(rows, columns) of a tile core: the whole plane when a block of `planes` planes fits the budget,
    else the largest square of 512-multiples whose block with margins does (at least 1024)."""
    if height * width * planes * itemsize <= budget:
        return height, width
    side = int(math.sqrt(budget / (planes * itemsize))) - 2 * margin
    side = max(MIN_CORE, side // ALIGN * ALIGN)
    return min(side, height), min(side, width)


def _owned(labels: np.ndarray, core: tuple[slice, slice] | None) -> np.ndarray:
    """Ids (≥1) of the instances whose bounding-box centre lies in `core` (slices in the tile's own
    coordinates; None: every instance). The box centre, not the centroid: `find_objects` finds it in
    one pass, and two tiles that see the same whole nucleus agree on it just as well."""
    boxes = ndi.find_objects(labels)
    found = [(i + 1, box) for i, box in enumerate(boxes) if box is not None]
    if core is None:
        return np.array([i for i, _ in found], np.int64)
    ys, xs = core
    return np.array(
        [
            i
            for i, (by, bx) in found
            if ys.start <= (by.start + by.stop - 1) / 2 < ys.stop and xs.start <= (bx.start + bx.stop - 1) / 2 < xs.stop
        ],
        np.int64,
    )


def _numbered(labels: np.ndarray, keep: np.ndarray, next_id: int) -> tuple[np.ndarray, int]:
    """`labels` with the ids in `keep` renumbered from `next_id` and every other id cleared; (labels, next free id)."""
    n = int(labels.max()) + 1 if labels.size else 1
    lut = np.zeros(n, np.uint32)
    lut[keep] = np.arange(next_id, next_id + len(keep), dtype=np.uint32)
    return lut[labels], next_id + len(keep)


def segment_block(
    image: zarr.Array,
    labels: zarr.Array,
    t: int,
    c: int,
    zs: slice,
    segment: PlaneSegmenter,
    next_id: int,
    margin: int,
    budget: int = BLOCK_BUDGET_BYTES,
) -> int:
    """Segment planes `zs` of channel c at time t of `image` (level 0, TCZYX) into `labels` (TZYX); the next free id."""
    height, width = image.shape[3:]
    planes = zs.stop - zs.start
    core = segmentation_core(height, width, planes, image.dtype.itemsize, margin, budget)
    whole = core == (height, width)
    for ys, xs in yx_regions(height, width, core):
        y0, y1 = (0, height) if whole else (max(0, ys.start - margin), min(height, ys.stop + margin))
        x0, x1 = (0, width) if whole else (max(0, xs.start - margin), min(width, xs.stop + margin))
        block = np.asarray(image[t, c, zs, y0:y1, x0:x1])
        for k, z in enumerate(range(zs.start, zs.stop)):
            found = np.asarray(segment(block[k]))
            if found.shape != block[k].shape:
                raise ValueError(f"the segmenter returned labels of shape {found.shape} for a plane of {block[k].shape}")
            found = found.astype(np.int64, copy=False)
            keep = _owned(found, None if whole else (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)))
            numbered, next_id = _numbered(found, keep, next_id)
            if whole:
                labels[t, z] = numbered
                continue
            painted = np.asarray(labels[t, z, y0:y1, x0:x1])
            free = (numbered > 0) & (painted == 0)
            painted[free] = numbered[free]
            labels[t, z, y0:y1, x0:x1] = painted
    return next_id
