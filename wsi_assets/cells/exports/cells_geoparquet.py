"""cells.parquet: the canonical cell table as GeoParquet 1.1 (WKB polygons, a bbox covering column).

Named `cells.parquet` because the GeoParquet specification recommends the plain `.parquet`
extension, and GDAL/QGIS, DuckDB, pandas and Spark all pick a file up by it; the internal store
of the same name lives in `segmentation/`, a folder users are not pointed at.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from wsi_assets.cells.exports import polygons
from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.store import extra_columns, iter_record_batches
from wsi_assets.core.atomic import atomic_output

GEOMETRY_COLUMN = "geometry"
BBOX_COLUMN = "bbox"
GEOPARQUET_VERSION = "1.1.0"
PROVENANCE_KEY = "wsi_assets"  # the file's key-value metadata entry holding the provenance (JSON)

BASE_FIELDS = [
    pa.field("cell_id", pa.int64()),
    pa.field("centroid_x", pa.float64()),
    pa.field("centroid_y", pa.float64()),
    pa.field("area_pixels", pa.float64()),
    pa.field("area_um2", pa.float64()),
    pa.field("tile_row", pa.int32()),
    pa.field("tile_col", pa.int32()),
]
BBOX_TYPE = pa.struct([(name, pa.float64()) for name in ("xmin", "ymin", "xmax", "ymax")])


def geoparquet_schema(extras: list[pa.Field]) -> pa.Schema:
    """Base columns, then whatever the stored table carries beyond its own schema, then bbox and geometry."""
    return pa.schema([*BASE_FIELDS, *extras, pa.field(BBOX_COLUMN, BBOX_TYPE), pa.field(GEOMETRY_COLUMN, pa.binary())])


def geo_metadata(total_bounds: list[float] | None) -> dict:
    column = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        # Explicitly null: an absent crs means OGC:CRS84 (longitude/latitude), and these are pixels.
        "crs": None,
        "orientation": "counterclockwise",
        "edges": "planar",
        "covering": {"bbox": {side: [BBOX_COLUMN, side] for side in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if total_bounds is not None:
        column["bbox"] = total_bounds
    return {"version": GEOPARQUET_VERSION, "primary_column": GEOMETRY_COLUMN, "columns": {GEOMETRY_COLUMN: column}}


def outline_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets and the flat x, y of the batch's outlines, as views of the Arrow buffers (no (M, 2) copy)."""
    polygon_x, polygon_y = batch.column("polygon_x"), batch.column("polygon_y")
    offsets = polygon_x.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], polygon_x.flatten().to_numpy(), polygon_y.flatten().to_numpy()


def geoparquet_batch(batch: pa.RecordBatch, schema: pa.Schema, mpp: float) -> pa.RecordBatch:
    """One stored batch as GeoParquet rows: outlines to WKB, their boxes, areas in µm²."""
    offsets, x, y = outline_arrays(batch)
    rings = polygons.closed_rings(offsets, x, y)
    wkb = shapely.to_wkb(polygons.polygons(rings), output_dimension=2)
    xmin, ymin, xmax, ymax = polygons.bounds(offsets, x, y)
    bbox = pa.StructArray.from_arrays([pa.array(v) for v in (xmin, ymin, xmax, ymax)], fields=list(BBOX_TYPE))
    area = batch.column("area_pixels")
    columns = {
        "area_um2": pa.array(area.to_numpy() * (mpp * mpp)),
        BBOX_COLUMN: bbox,
        GEOMETRY_COLUMN: pa.array(wkb, pa.binary()),
    }
    return pa.record_batch([columns[name] if name in columns else batch.column(name) for name in schema.names], schema=schema)


def write_cells_geoparquet(cells_path: Path, destination: Path, provenance: dict) -> int:
    """cells.parquet (GeoParquet 1.1), one row group per stored batch. Returns the number of cells."""
    schema = geoparquet_schema(extra_columns(cells_path))
    mpp = float(provenance["mpp"])
    low = np.array([np.inf, np.inf])
    high = np.array([-np.inf, -np.inf])
    rows = 0
    with atomic_output(Path(destination)) as temporary:
        # The geo metadata's file bbox is known only at the end, and metadata added at close is
        # what readers see only when no Arrow schema (with its own metadata) is stored.
        writer = pq.ParquetWriter(
            str(temporary),
            schema,
            compression="zstd",
            store_schema=False,
            write_statistics=[name for name in schema.names if name != GEOMETRY_COLUMN],
        )
        try:
            for stored in iter_record_batches(cells_path):
                batch = geoparquet_batch(stored, schema, mpp)
                writer.write_batch(batch, row_group_size=len(batch))
                box = {side: batch.column(BBOX_COLUMN).field(side).to_numpy() for side in BBOX_TYPE.names}
                low = np.minimum(low, [box["xmin"].min(), box["ymin"].min()])
                high = np.maximum(high, [box["xmax"].max(), box["ymax"].max()])
                rows += len(batch)
            if rows == 0:
                writer.write_table(schema.empty_table())
            total_bounds = [*low.tolist(), *high.tolist()] if rows else None
            writer.add_key_value_metadata(
                {"geo": json.dumps(geo_metadata(total_bounds)), PROVENANCE_KEY: json.dumps(provenance, default=str)}
            )
        finally:
            writer.close()
    return rows


FORMAT = ExportFormat(
    asset_name="cells_geoparquet",
    file_name="cells.parquet",
    kinds=("parquet", "geopandas"),
    description=(
        "cells.parquet: the canonical cell table as GeoParquet 1.1 (WKB polygons in level-0 pixels, bbox covering "
        "column, provenance in the file metadata); geopandas.read_parquet(path, bbox=...) reads a region."
    ),
    write=write_cells_geoparquet,
)
