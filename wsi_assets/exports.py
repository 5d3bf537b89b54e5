"""Exports built from the stored segmentation, a batch at a time: cells.csv and cells.zarr.zip."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.cell_store import count_cells, iter_cells, read_cell_columns
from wsi_assets.nucleus_table import NucleusTable
from wsi_assets.user_files import atomic_output

CSV_COLUMNS = ["cell_id", "centroid_x", "centroid_y", "polygon_coords", "polygon_point_count", "area_pixels", "area_um2"]
ZARR_CHUNK_CELLS = 100_000
ZARR_CHUNK_VERTICES = 1_000_000


def _polygon_text(vertices: np.ndarray) -> str:
    return "[" + ",".join(f"[{x:.2f},{y:.2f}]" for x, y in vertices.tolist()) + "]"


def _csv_lines(cell_ids: np.ndarray, nuclei: NucleusTable, mpp: float) -> str:
    counts = nuclei.point_counts
    area_um2 = nuclei.area_pixels * mpp * mpp
    lines = []
    for i in range(len(nuclei)):
        polygon = _polygon_text(nuclei.polygon(i))
        lines.append(
            f'{cell_ids[i]},{nuclei.centroid_x[i]:.3f},{nuclei.centroid_y[i]:.3f},"{polygon}",'
            f"{counts[i]},{nuclei.area_pixels[i]:.2f},{area_um2[i]:.3f}\n"
        )
    return "".join(lines)


def write_cells_csv(cells_path: Path, csv_path: Path, mpp: float) -> int:
    """cells.csv: one row per nucleus, level-0 pixel coordinates. Returns the number of rows."""
    rows = 0
    with atomic_output(Path(csv_path)) as temporary, open(temporary, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(CSV_COLUMNS) + "\n")
        for cell_ids, nuclei, _ in iter_cells(cells_path):
            out.write(_csv_lines(cell_ids, nuclei, mpp))
            rows += len(nuclei)
    return rows


def write_cells_zarr_zip(cells_path: Path, zip_path: Path, attrs: dict) -> int:
    """cells.zarr.zip: Zarr v3 zip store with ragged polygons (offsets + vertices). Returns the cell count."""
    total = count_cells(cells_path)
    total_vertices = int(read_cell_columns(cells_path, ["polygon_point_count"])["polygon_point_count"].sum())
    zip_path = Path(zip_path)
    staging = zip_path.with_name(f".{zip_path.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_zarr_directory(cells_path, staging, total, total_vertices, attrs)
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


def _zip_directory(directory: Path, zip_path: Path) -> None:
    # Chunks are already compressed; storing them keeps random access cheap.
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())


def read_cells_zarr_zip(zip_path: Path) -> dict:
    """Everything in a cells.zarr.zip, in memory (for tests and small slides)."""
    store = zarr.storage.ZipStore(str(zip_path), mode="r")
    try:
        root = zarr.open_group(store=store, mode="r")
        data = {name: root[name][:] for name in ("cell_ids", "centroids", "area_pixels", "polygon_point_counts", "polygon_offsets", "polygon_vertices")}
        data["attrs"] = dict(root.attrs)
    finally:
        store.close()
    return data
