"""One 2D plane of a stack, for any (t, z, c), as a PNG holding the plane's own values.

The plane is read from the OME-Zarr copy and written band by band (`png_stream`), so a slice of a
60000² plane costs one band of rows, not the plane. The UI's look at it comes from the pyramid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.core.atomic import atomic_output
from wsi_assets.stacks import ome_zarr
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.ome_zarr import open_level, smallest_level_within
from wsi_assets.stacks.png_stream import GrayPngWriter

PREVIEW_MAX_SIDE = 1024


@dataclass(frozen=True)
class WrittenSlice:
    """What was written: the plane's (rows, columns) and dtype, and the same plane from a pyramid level of at most PREVIEW_MAX_SIDE px."""

    shape: tuple[int, int]
    dtype: np.dtype
    preview: np.ndarray


def check_indices(shape: tuple[int, ...], t: int, z: int, c: int) -> None:
    """StackReadError naming the first index outside the stack's T, Z or C range."""
    sizes = {"t": shape[0], "c": shape[1], "z": shape[2]}
    for name, value in (("t", t), ("z", z), ("c", c)):
        size = sizes[name]
        if not 0 <= value < size:
            raise StackReadError(
                f"{name}={value} is out of range: this stack has {name.upper()}={size} ({name} from 0 to {size - 1})"
            )


def row_bands(level0: zarr.Array) -> list[slice]:
    """Row ranges of one plane within the block budget: whole chunk rows when they fit, so each chunk is decoded once."""
    height, width = level0.shape[3:]
    chunk_rows = level0.chunks[3]
    rows = max(1, ome_zarr.BLOCK_BUDGET_BYTES // (ome_zarr.COPIES * width * level0.dtype.itemsize))
    rows = rows // chunk_rows * chunk_rows if rows >= chunk_rows else rows
    return [slice(y0, min(height, y0 + rows)) for y0 in range(0, height, rows)]


def _value_range(level0: zarr.Array, t: int, z: int, c: int, bands: list[slice]) -> tuple[float, float]:
    low, high = np.inf, -np.inf
    for ys in bands:
        band = np.asarray(level0[t, c, z, ys])
        low, high = min(low, float(np.min(band))), max(high, float(np.max(band)))
    return low, high


def png_values(band: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Rows as PNG can hold them: 8- and 16-bit unsigned values unchanged, anything else stretched from `value_range` to 16 bits."""
    if value_range is None:
        return band
    low, high = value_range
    scaled = (band.astype(np.float64) - low) / (high - low) if high > low else np.zeros(band.shape)
    return np.rint(scaled * 65535).astype(np.uint16)


def write_slice_png(zarr_folder: Path, t: int, z: int, c: int, target: Path) -> tuple[Path, WrittenSlice, str]:
    """Write the full-resolution (t, z, c) plane to `target` as PNG (atomically); returns the path, what was written, and how values were kept."""
    level0 = open_level(zarr_folder, 0)
    check_indices(level0.shape, t, z, c)
    height, width = level0.shape[3:]
    bands = row_bands(level0)
    kept = level0.dtype in (np.uint8, np.uint16)
    value_range = None if kept else _value_range(level0, t, z, c, bands)
    how = (
        "values unchanged" if kept else f"{level0.dtype} stretched from [{value_range[0]:.6g}, {value_range[1]:.6g}] to 0..65535"
    )
    target = Path(target)
    with atomic_output(target) as temporary, open(temporary, "wb") as handle:
        writer = GrayPngWriter(handle, width, height, level0.dtype if kept else np.uint16)
        for ys in bands:
            writer.write_rows(png_values(np.asarray(level0[t, c, z, ys]), value_range))
        writer.close()
    small = open_level(zarr_folder, smallest_level_within(zarr_folder, PREVIEW_MAX_SIDE))
    return target, WrittenSlice((height, width), level0.dtype, np.asarray(small[t, c, z])), how
