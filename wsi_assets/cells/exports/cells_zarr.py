"""cells.zarr.zip: a Zarr v3 zip store of cell ids, centroids and ragged polygons (offsets + vertices)."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, QUPATH_NAMES
from wsi_assets.cells.store import count_cells, extra_columns, iter_cells, read_cell_columns
from wsi_assets.core.atomic import atomic_output

ZARR_CHUNK_CELLS = 100_000
ZARR_CHUNK_VERTICES = 1_000_000


def write_cells_zarr_zip(cells_path: Path, zip_path: Path, provenance: dict) -> int:
    """cells.zarr.zip: Zarr v3 zip store with ragged polygons (offsets + vertices). Returns the cell count."""
    total = count_cells(cells_path)
    total_vertices = int(read_cell_columns(cells_path, ["polygon_point_count"])["polygon_point_count"].sum())
    zip_path = Path(zip_path)
    staging = zip_path.with_name(f".{zip_path.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_zarr_directory(cells_path, staging, total, total_vertices, provenance)
        with atomic_output(zip_path) as temporary:
            _zip_directory(staging, temporary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return total


def _write_zarr_directory(cells_path: Path, directory: Path, total: int, total_vertices: int, attrs: dict) -> None:
    root = zarr.open_group(store=str(directory), mode="w", zarr_format=3)
    root.attrs.update(
        {
            "total_cells": total,
            "coordinates": "level-0 pixels, x then y",
            "polygons": "vertices of cell i are polygon_vertices[polygon_offsets[i]:polygon_offsets[i+1]]",
            **attrs,
        }
    )
    cell_chunk = max(1, min(ZARR_CHUNK_CELLS, total))
    vertex_chunk = max(1, min(ZARR_CHUNK_VERTICES, total_vertices))
    cell_ids = root.create_array("cell_ids", shape=(total,), chunks=(cell_chunk,), dtype="int64")
    centroids = root.create_array("centroids", shape=(total, 2), chunks=(cell_chunk, 2), dtype="float64")
    areas = root.create_array("area_pixels", shape=(total,), chunks=(cell_chunk,), dtype="float64")
    counts = root.create_array("polygon_point_counts", shape=(total,), chunks=(cell_chunk,), dtype="int32")
    offsets = root.create_array("polygon_offsets", shape=(total + 1,), chunks=(cell_chunk,), dtype="int64")
    vertices = root.create_array("polygon_vertices", shape=(total_vertices, 2), chunks=(vertex_chunk, 2), dtype="float32")
    offsets[0:1] = np.zeros(1, np.int64)
    cell_at = vertex_at = 0
    for ids, nuclei, _ in iter_cells(cells_path, batch_cells=cell_chunk):
        n, m = len(nuclei), len(nuclei.vertices)
        cell_ids[cell_at : cell_at + n] = ids
        centroids[cell_at : cell_at + n] = np.stack([nuclei.centroid_x, nuclei.centroid_y], axis=1)
        areas[cell_at : cell_at + n] = nuclei.area_pixels
        counts[cell_at : cell_at + n] = nuclei.point_counts
        offsets[cell_at + 1 : cell_at + n + 1] = vertex_at + nuclei.offsets[1:]
        vertices[vertex_at : vertex_at + m] = nuclei.vertices
        cell_at += n
        vertex_at += m
    _write_measurements_and_classes(cells_path, root, total, cell_chunk)


def _write_measurements_and_classes(cells_path: Path, root, total: int, cell_chunk: int) -> None:
    """`measurements/<column>` (float32, N) per measurement the table holds, and `class_codes`
    (int8, N: index into the `class_names` attribute, -1 unclassified)."""
    stored = {field.name for field in extra_columns(cells_path)}
    present = [name for name in MEASUREMENT_COLUMNS if name in stored]
    if present:
        group = root.create_group("measurements")
        group.attrs["qupath_names"] = {name: QUPATH_NAMES[name] for name in present}
        for name in present:
            array = group.create_array(name, shape=(total,), chunks=(cell_chunk,), dtype="float32")
            # One column at a time: a million cells' column is 4 MB.
            array[:] = read_cell_columns(cells_path, [name])[name].astype(np.float32)
    if CLASS_COLUMN in stored:
        names = read_cell_columns(cells_path, [CLASS_COLUMN])[CLASS_COLUMN]
        lookup = {name: code for code, name in enumerate(CLASS_NAMES)}
        codes = np.fromiter((lookup.get(name, -1) for name in names.tolist()), np.int8, len(names))
        array = root.create_array("class_codes", shape=(total,), chunks=(cell_chunk,), dtype="int8")
        array[:] = codes
        array.attrs["class_names"] = list(CLASS_NAMES)


def _zip_directory(directory: Path, zip_path: Path) -> None:
    # Chunks are already compressed; storing them keeps random access cheap.
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())


FORMAT = ExportFormat(
    asset_name="cells_zarr",
    file_name="cells.zarr.zip",
    kinds=("zarr",),
    description="cells.zarr.zip: Zarr v3 zip store of cell ids, centroids and ragged polygons (offsets + vertices), level-0 pixels.",
    write=write_cells_zarr_zip,
)
