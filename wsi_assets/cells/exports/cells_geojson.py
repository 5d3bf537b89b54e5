"""cells.geojson: every nucleus as a QuPath detection (or, with cell expansion, a cell), level-0 pixels.

QuPath 0.5/0.6 import it by drag and drop: a FeatureCollection whose features carry
`properties.objectType`, a `classification` with a colour, a `measurements` map and a UUID `id`;
a cell's nucleus is the feature's top-level `nucleusGeometry`, as QuPath itself writes it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from wsi_assets.cells.exports import polygons, qupath_features
from wsi_assets.cells.exports.cell_expansion import CellGrower, cell_expansion_um, slide_size
from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.store import iter_record_batches, nuclei_from_batch
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.measurements import QUPATH_NAMES
from wsi_assets.core.atomic import atomic_output

# Columns that are the cell's identity or shape rather than a measurement of it.
NOT_MEASUREMENTS = {"cell_id", "polygon_point_count", "polygon_x", "polygon_y", CLASS_COLUMN}
GZIP_LEVEL = 5  # most of level 9's saving at a third of its time on coordinate text


def _measurement_columns(batch: pa.RecordBatch, mpp: float) -> dict[str, np.ndarray]:
    area = batch.column("area_pixels").to_numpy()
    columns = {
        "Cell ID": batch.column("cell_id").to_numpy(),  # exact in QuPath's float32 up to 16.7 M cells
        "Centroid X px": batch.column("centroid_x").to_numpy(),
        "Centroid Y px": batch.column("centroid_y").to_numpy(),
        "Nucleus: Area px": area,
        "Nucleus: Area µm^2": area * (mpp * mpp),
        "Tile row": batch.column("tile_row").to_numpy(),
        "Tile column": batch.column("tile_col").to_numpy(),
    }
    # Measurements a later stage adds to the stored table pass through under their own names.
    for field in batch.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        if (
            numeric
            and field.name not in NOT_MEASUREMENTS
            and field.name not in ("centroid_x", "centroid_y", "area_pixels", "tile_row", "tile_col")
        ):
            # The nucleus measurements under the names QuPath gives its own.
            columns[QUPATH_NAMES.get(field.name, field.name)] = (
                batch.column(field.name).to_numpy(zero_copy_only=False).astype(np.float64)
            )
    return columns


def _feature_texts(batch: pa.RecordBatch, slide: str, mpp: float, grower: CellGrower | None) -> pa.Array:
    cell_ids, nuclei, _ = nuclei_from_batch(batch)
    rings = polygons.closed_rings(nuclei.offsets, nuclei.vertices[:, 0], nuclei.vertices[:, 1])
    nucleus = qupath_features.polygon_geometry(rings)
    columns = _measurement_columns(batch, mpp)
    ids = qupath_features.cell_uuids(slide, cell_ids)
    classes = qupath_features.classification(batch)
    if grower is None:
        return qupath_features.features(ids, nucleus, "detection", qupath_features.measurements(columns), classes)
    points = np.stack([nuclei.centroid_x, nuclei.centroid_y], axis=1)
    cells = grower.grow(cell_ids, points, polygons.polygons(rings))
    area = shapely.area(cells)
    columns.update({"Cell: Area px": area, "Cell: Area µm^2": area * (mpp * mpp)})
    rounded = shapely.transform(cells, lambda xy: np.round(xy, qupath_features.COORDINATE_DECIMALS))
    geometry = pa.array(shapely.to_geojson(rounded), pa.string())
    return qupath_features.features(ids, geometry, "cell", qupath_features.measurements(columns), classes, nucleus)


def _text_bytes(texts: pa.Array) -> memoryview:
    """The batch's feature texts back to back, straight from the Arrow buffer."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32, len(texts) + 1, texts.offset * 4)
    return memoryview(texts.buffers()[2])[offsets[0] : offsets[-1]]


def write_cells_geojson(
    cells_path: Path,
    destination: Path,
    provenance: dict,
    *,
    compress: bool | None = None,
    cell_expansion: float | None = None,
) -> int:
    """cells.geojson, streamed a batch of features at a time. Returns the number of features.

    compress: gzip the file (default: when `destination` ends in .gz).
    cell_expansion: µm to grow each nucleus into a cell (default: provenance["settings"]
    ["cell_expansion_um"], else 0 = nuclei only, as detections).
    """
    destination = Path(destination)
    compress = destination.suffix == ".gz" if compress is None else compress
    mpp = float(provenance["mpp"])
    slide = str(provenance.get("slide", ""))
    expansion_um = cell_expansion_um(provenance, cell_expansion)
    grower = CellGrower(cells_path, expansion_um / mpp, slide_size(cells_path, provenance)) if expansion_um > 0 else None
    # The provenance is a foreign member of the collection (RFC 7946 §6.1); QuPath ignores it.
    head = (
        '{"type":"FeatureCollection","provenance":' + json.dumps(provenance, ensure_ascii=False, default=str) + ',\n"features":['
    )
    rows = 0
    with atomic_output(destination) as temporary:
        opener = gzip.open(temporary, "wb", compresslevel=GZIP_LEVEL) if compress else open(temporary, "wb")
        with opener as out:
            out.write(head.encode("utf-8"))
            for batch in iter_record_batches(cells_path):
                text = _text_bytes(_feature_texts(batch, slide, mpp, grower))
                out.write(text if rows else text[1:])  # the first feature has no comma before it
                rows += len(batch)
            out.write(b"\n]}\n")
    return rows


FORMAT = ExportFormat(
    asset_name="cells_geojson",
    file_name="cells.geojson",
    kinds=("geojson", "qupath"),
    description=(
        "cells.geojson: every nucleus as a QuPath detection (a cell with its nucleusGeometry when cell expansion is set), "
        "level-0 pixels, UUID ids, measurements map; drag and drop into QuPath 0.5/0.6."
    ),
    write=write_cells_geojson,
)
