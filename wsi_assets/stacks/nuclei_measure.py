"""Per-nucleus measurements of one time point of a labelled stack: centroid, Z extent, size, per-channel intensity.

One pass over the time point's label planes and every channel, a block of Z planes and a Y/X
tile at a time, summing into per-id accumulators (ids of one time point lie in one range, so
the sums are `np.bincount`s over that range: memory follows the number of nuclei, not the stack).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import zarr

from wsi_assets.stacks.blocks import tile_within, yx_regions

MEASURE_BUDGET_BYTES = 96 * 2**20
# A tile's labels (uint32), one channel's block, and bincount's float64 weights of one plane.
BYTES_PER_PIXEL = 4 + 2 + 8


def safe_name(name: str) -> str:
    """A channel name as a column-name part: letters, digits and '_' only ('Alexa 488' -> 'Alexa_488')."""
    safe = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
    return safe or "channel"


def channel_columns(names: tuple[str, ...]) -> list[str]:
    """One safe, unique name per channel (a repeated name gets its index: 'GFP', 'GFP_1')."""
    out: list[str] = []
    for i, name in enumerate(names):
        safe = safe_name(name)
        out.append(safe if safe not in out else f"{safe}_{i}")
    return out


def measure_time_point(
    image: zarr.Array,
    labels: zarr.Array,
    t: int,
    ids: tuple[int, int],
    channel_names: tuple[str, ...],
    voxel_um: dict,
    z_block: int,
) -> pd.DataFrame:
    """One row per nucleus of time point t whose ids lie in [ids[0], ids[1]); see `nuclei.parquet`'s columns."""
    low, high = ids
    size = max(high - low, 0) + 1  # index 0: background
    _, channels, depth, height, width = image.shape
    count, sum_x, sum_y, sum_z = (np.zeros(size) for _ in range(4))
    z_first, z_last = np.full(size, np.iinfo(np.int64).max), np.full(size, -1)
    sums = np.zeros((channels, size))
    tile = tile_within(MEASURE_BUDGET_BYTES, BYTES_PER_PIXEL * z_block, height, width)
    for z0 in range(0, depth, z_block):
        zs = slice(z0, min(depth, z0 + z_block))
        for ys, xs in yx_regions(height, width, tile):
            block = np.asarray(labels[t, zs, ys, xs]).astype(np.int64)
            index = np.where(block > 0, block - (low - 1), 0)
            if index.max(initial=0) >= size:
                raise ValueError(f"label ids of time point {t} run past {high - 1}; the labels and the measurement disagree")
            rows = np.arange(ys.start, ys.stop, dtype=np.float64)[:, None]
            cols = np.arange(xs.start, xs.stop, dtype=np.float64)[None, :]
            present = []
            for k in range(block.shape[0]):
                flat = index[k].ravel()
                n = np.bincount(flat, minlength=size)
                count += n
                sum_x += np.bincount(flat, weights=np.broadcast_to(cols, index[k].shape).ravel(), minlength=size)
                sum_y += np.bincount(flat, weights=np.broadcast_to(rows, index[k].shape).ravel(), minlength=size)
                sum_z += n * (z0 + k)
                here = n > 0
                z_first[here] = np.minimum(z_first[here], z0 + k)
                z_last[here] = np.maximum(z_last[here], z0 + k)
                present.append(flat)
            for c in range(channels):
                values = np.asarray(image[t, c, zs, ys, xs])
                for k, flat in enumerate(present):
                    sums[c] += np.bincount(flat, weights=values[k].ravel().astype(np.float64), minlength=size)
    found = np.flatnonzero(count[1:] > 0) + 1
    n = count[found]
    table = {
        "t": np.full(len(found), t, np.int32),
        "label": (found + low - 1).astype(np.int64),
        "centroid_x": sum_x[found] / n,
        "centroid_y": sum_y[found] / n,
        "centroid_z": sum_z[found] / n,
        "z_first": z_first[found].astype(np.int32),
        "z_last": z_last[found].astype(np.int32),
        "voxels": n.astype(np.int64),
    }
    x_um, y_um, z_um = (voxel_um.get(a) for a in "xyz")
    area = x_um * y_um if x_um and y_um else np.nan
    if depth > 1:
        table["volume_um3"] = n * area * (z_um if z_um else np.nan)
    else:
        table["area_um2"] = n * area
    for c, column in enumerate(channel_columns(channel_names)):
        table[f"mean_{column}"] = sums[c, found] / n
        table[f"sum_{column}"] = sums[c, found]
    return pd.DataFrame(table)
