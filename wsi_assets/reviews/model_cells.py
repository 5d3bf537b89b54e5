"""The model's side of a review: the slide's stored cells inside the reviewed regions, with their class when the table has one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.exports.polygons import closed_rings, polygons
from wsi_assets.cells.store import UnreadableCellTable


@dataclass
class ModelCells:
    cell_ids: np.ndarray
    polygons: np.ndarray  # shapely Polygons
    centroids: np.ndarray  # (N, 2) x, y
    classes: list  # str or None per cell; all None when the table has no class column
    has_classes: bool


def inside(points: np.ndarray, area) -> np.ndarray:
    """Which (x, y) points lie in `area` (a shapely geometry), or all of them when area is None."""
    if area is None:
        return np.ones(len(points), bool)
    if len(points) == 0:
        return np.zeros(0, bool)
    shapely.prepare(area)
    return shapely.contains_xy(area, points[:, 0], points[:, 1])


def read_model_cells(cells_parquet: Path, area=None) -> ModelCells:
    """Cells of the stored table whose centroid lies in `area` (every cell when None); only the area's box is read."""
    try:
        schema = pq.read_schema(str(cells_parquet))
        has_classes = CLASS_COLUMN in schema.names
        columns = ["cell_id", "centroid_x", "centroid_y", "polygon_x", "polygon_y"] + ([CLASS_COLUMN] if has_classes else [])
        filters = None
        if area is not None:
            x0, y0, x1, y1 = area.bounds
            filters = [("centroid_x", ">=", x0), ("centroid_x", "<=", x1), ("centroid_y", ">=", y0), ("centroid_y", "<=", y1)]
        table = pq.read_table(str(cells_parquet), columns=columns, filters=filters)
    except (pa.ArrowException, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableCellTable(
            f"{cells_parquet.name} cannot be read ({reason}): run process_slide for this slide again"
        ) from error
    centroids = np.stack([table.column("centroid_x").to_numpy(), table.column("centroid_y").to_numpy()], axis=1).reshape(-1, 2)
    keep = inside(centroids, area)
    table = table.filter(pa.array(keep))
    polygon_x = table.column("polygon_x").combine_chunks()
    polygon_y = table.column("polygon_y").combine_chunks()
    offsets = polygon_x.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0] if len(offsets) else 0
    rings = (
        closed_rings(
            offsets,
            polygon_x.flatten().to_numpy(zero_copy_only=False).astype(np.float64),
            polygon_y.flatten().to_numpy(zero_copy_only=False).astype(np.float64),
        )
        if len(table)
        else None
    )
    shapes = polygons(rings) if rings is not None else np.empty(0, dtype=object)
    classes = table.column(CLASS_COLUMN).to_pylist() if has_classes else [None] * len(table)
    # Paired by their outlines' centroids, as the reviewer's cells are: a label of two parts keeps
    # its largest as the outline, and its pixel centroid can lie beyond the pairing radius from it.
    if len(shapes):
        points = shapely.centroid(shapes)
        outline_centroids = np.stack([shapely.get_x(points), shapely.get_y(points)], axis=1)
    else:
        outline_centroids = centroids[keep]
    return ModelCells(table.column("cell_id").to_numpy(), shapes, outline_centroids, classes, has_classes)
