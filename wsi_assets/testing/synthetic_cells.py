"""Stored cell tables without a segmentation: nuclei laid on a grid, tile by tile, for export tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import NucleusTable

TILE_PX = 1024


def grid_nuclei(origin_x: float, origin_y: float, side: int, spacing: float, vertices: int = 16, seed: int = 0) -> NucleusTable:
    """side x side nuclei: irregular `vertices`-gons around a grid of centres, clockwise on screen like traced outlines."""
    rng = np.random.default_rng(seed)
    count = side * side
    cx = origin_x + (np.arange(count) % side + 0.5) * spacing
    cy = origin_y + (np.arange(count) // side + 0.5) * spacing
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radii = spacing * rng.uniform(0.25, 0.4, (count, vertices))
    # Alternate the direction so the writers' orientation step has both kinds to fix.
    direction = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)[:, None]
    x = (cx[:, None] + radii * np.cos(direction * angles)).astype(np.float32)
    y = (cy[:, None] + radii * np.sin(direction * angles)).astype(np.float32)
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    area = 0.5 * np.abs(np.sum(xs * np.roll(ys, -1, 1) - np.roll(xs, -1, 1) * ys, axis=1))
    return NucleusTable(
        cx, cy, area, np.arange(0, count * vertices + 1, vertices, dtype=np.int64), np.stack([x.ravel(), y.ravel()], axis=1)
    )


def write_grid_store(path: Path, tiles_y: int, tiles_x: int, per_tile_side: int, vertices: int = 16) -> int:
    """A stored cell table of tiles_y x tiles_x tiles of per_tile_side² nuclei each. Returns the cell count."""
    spacing = TILE_PX / per_tile_side
    with CellStoreWriter(Path(path)) as writer:
        for row in range(tiles_y):
            for col in range(tiles_x):
                nuclei = grid_nuclei(col * TILE_PX, row * TILE_PX, per_tile_side, spacing, vertices, seed=row * tiles_x + col)
                writer.append(nuclei, row, col)
        return writer.cells_written


def with_columns(source: Path, destination: Path, columns: dict[str, pa.Array | np.ndarray | list]) -> Path:
    """A copy of a stored table with extra columns, as a classifier or measurement stage would add them."""
    table = pq.read_table(str(source))
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    pq.write_table(table, str(destination), row_group_size=50_000)
    return destination
