"""Chunk-sized blocks over a stack's OME-Zarr level: the unit every streaming pass reads."""

from __future__ import annotations

from collections.abc import Iterator

import zarr


def zyx_blocks(array: zarr.Array) -> Iterator[tuple[slice, slice, slice]]:
    """(z, y, x) slices of one (t, c) volume, one storage chunk each, so a read touches one chunk."""
    _, _, z_size, y_size, x_size = array.shape
    _, _, zc, yc, xc = array.chunks
    for z0 in range(0, z_size, zc):
        for y0 in range(0, y_size, yc):
            for x0 in range(0, x_size, xc):
                yield slice(z0, min(z_size, z0 + zc)), slice(y0, min(y_size, y0 + yc)), slice(x0, min(x_size, x0 + xc))
