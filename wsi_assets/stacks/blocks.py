"""Blocks every streaming pass reads: storage chunks of a stack's OME-Zarr level, and Y/X tiles of a plane within a byte budget."""

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


def tile_within(budget_bytes: int, bytes_per_pixel: float, height: int, width: int, align: int = 512) -> tuple[int, int]:
    """(rows, columns) of the largest tile whose pixels, at `bytes_per_pixel` (all Z planes of a block
    together), fit `budget_bytes`; sides are multiples of `align` or the plane's own side.

    Full-width bands come first: a stripped TIFF decodes whole strips, which a band reads once.
    Only when `align` full-width rows do not fit does the tile narrow. A tile is never smaller
    than `align` × `align` (the caller keeps that within the budget).
    """
    pixels = max(1, int(budget_bytes // max(bytes_per_pixel, 1e-9)))
    rows = pixels // width
    if rows >= height:
        return height, width
    if rows >= align:
        return rows // align * align, width
    rows = min(align, height)
    columns = max(align, pixels // rows // align * align)
    return rows, min(columns, width)


def yx_regions(height: int, width: int, tile: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) slices covering a height × width plane with tiles of `tile`, row of tiles by row of tiles."""
    rows, columns = tile
    for y0 in range(0, height, rows):
        for x0 in range(0, width, columns):
            yield slice(y0, min(height, y0 + rows)), slice(x0, min(width, x0 + columns))
