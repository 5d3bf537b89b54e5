"""cells.parquet (GeoParquet 1.1) read back with geopandas, region by region, against the stored table."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from wsi_assets.cells.exports.cells_geoparquet import PROVENANCE_KEY, write_cells_geoparquet
from wsi_assets.cells.store import CellStoreWriter, iter_cells
from wsi_assets.testing.synthetic_cells import with_columns, write_grid_store

MPP = 0.2631
PROVENANCE = {"slide": "lab/main/slide-1", "mpp": MPP, "mpp_inferred": True, "segmenter": "test", "settings": {"tile_px": 1024}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("geoparquet") / "cells.parquet"
    write_grid_store(path, 2, 3, per_tile_side=15)
    return path


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("geoparquet-out") / "cells.parquet"
    write_cells_geoparquet(store, out, PROVENANCE)
    return out


def stored_table(path) -> dict[str, np.ndarray]:
    """ids, outlines as shapely polygons, areas and vertex boxes, straight from the store."""
    ids, outlines, areas, boxes = [], [], [], []
    for batch_ids, nuclei, _ in iter_cells(path):
        for i in range(len(nuclei)):
            vertices = nuclei.polygon(i).astype(np.float64)
            outlines.append(shapely.Polygon(vertices))
            boxes.append([*vertices.min(axis=0), *vertices.max(axis=0)])
        ids.append(batch_ids)
        areas.append(nuclei.area_pixels)
    return {"ids": np.concatenate(ids), "outlines": np.array(outlines), "areas": np.concatenate(areas), "boxes": np.array(boxes)}


def mismatched_ids(frame: gpd.GeoDataFrame, stored: dict) -> list[int]:
    """Cells whose geometry is not exactly the stored outline."""
    by_id = dict(zip(stored["ids"].tolist(), stored["outlines"]))
    return [
        int(i)
        for i, g in zip(frame["cell_id"], frame.geometry)
        if not shapely.equals_exact(g.normalize(), by_id[int(i)].normalize())
    ]


def ids_in_box(stored: dict, box: tuple[float, float, float, float]) -> set[int]:
    xmin, ymin, xmax, ymax = stored["boxes"].T
    hit = (xmin <= box[2]) & (xmax >= box[0]) & (ymin <= box[3]) & (ymax >= box[1])
    return set(stored["ids"][hit].tolist())


def test_geopandas_reads_every_cell_with_its_exact_outline_and_areas(store, exported):
    stored = stored_table(store)
    frame = gpd.read_parquet(exported)
    assert frame.crs is None and frame.geometry.name == "geometry"
    assert list(frame.columns) == [
        "cell_id",
        "centroid_x",
        "centroid_y",
        "area_pixels",
        "area_um2",
        "tile_row",
        "tile_col",
        "geometry",
    ]
    # geopandas hides the covering column; other readers see it.
    assert pq.read_schema(exported).names[-2:] == ["bbox", "geometry"]
    assert frame["cell_id"].tolist() == stored["ids"].tolist()
    assert mismatched_ids(frame, stored) == []
    assert frame.geometry.exterior.is_ccw.all()
    np.testing.assert_allclose(frame.geometry.area, stored["areas"], rtol=1e-5)
    np.testing.assert_allclose(frame["area_um2"], stored["areas"] * MPP * MPP)
    assert set(zip(frame["tile_row"], frame["tile_col"])) == {(r, c) for r in range(2) for c in range(3)}


def test_the_geometry_check_catches_a_moved_outline(store, exported):
    stored = stored_table(store)
    frame = gpd.read_parquet(exported)
    frame.loc[5, "geometry"] = shapely.affinity.translate(frame.geometry[5], 0.5, 0)
    assert mismatched_ids(frame, stored) == [int(frame["cell_id"][5])]


@pytest.mark.parametrize("box", [(100.0, 200.0, 400.0, 450.0), (1000.0, 0.0, 1030.0, 2048.0), (5000.0, 5000.0, 6000.0, 6000.0)])
def test_a_bbox_read_returns_exactly_the_cells_whose_box_meets_it(store, exported, box):
    stored = stored_table(store)
    expected = ids_in_box(stored, box)
    found = gpd.read_parquet(exported, bbox=box)
    assert set(found["cell_id"].tolist()) == expected
    assert len(expected) < len(stored["ids"])  # a real filter, not everything
    assert box[0] > 4000 or expected  # and the cases inside the slide find cells


def test_geoparquet_metadata_declares_wkb_polygons_in_pixels_with_a_bbox_covering(store, exported):
    metadata = pq.read_schema(exported).metadata
    geo = json.loads(metadata[b"geo"])
    column = geo["columns"][geo["primary_column"]]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert "crs" in column and column["crs"] is None  # absent would mean longitude/latitude
    assert column["covering"]["bbox"] == {side: ["bbox", side] for side in ("xmin", "ymin", "xmax", "ymax")}
    boxes = stored_table(store)["boxes"]
    assert column["bbox"] == pytest.approx([*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)])
    assert json.loads(metadata[PROVENANCE_KEY.encode()]) == PROVENANCE


def test_extra_columns_of_the_stored_table_pass_through(store, tmp_path):
    count = pq.ParquetFile(str(store)).metadata.num_rows
    classes = ["epithelial", "spindle", None] * (count // 3) + ["other"] * (count % 3)
    extended = with_columns(store, tmp_path / "stored.parquet", {"class": classes, "eccentricity": np.linspace(0, 1, count)})
    out = tmp_path / "cells.parquet"
    assert write_cells_geoparquet(extended, out, PROVENANCE) == count
    frame = gpd.read_parquet(out)
    assert frame["class"].fillna("-").tolist() == [name or "-" for name in classes]
    np.testing.assert_allclose(frame["eccentricity"], np.linspace(0, 1, count))
    assert pq.read_schema(out).names[-4:] == ["class", "eccentricity", "bbox", "geometry"]


def test_an_empty_table_is_a_valid_empty_geoparquet(tmp_path):
    empty = tmp_path / "stored.parquet"
    CellStoreWriter(empty).close()
    out = tmp_path / "cells.parquet"
    assert write_cells_geoparquet(empty, out, PROVENANCE) == 0
    frame = gpd.read_parquet(out)
    assert len(frame) == 0 and "bbox" not in json.loads(pq.read_schema(out).metadata[b"geo"])["columns"]["geometry"]


def test_a_rewrite_never_modifies_a_hard_linked_previous_file(store, tmp_path):
    out = tmp_path / "cells.parquet"
    write_cells_geoparquet(store, out, PROVENANCE)
    previous_set = tmp_path / "previous.parquet"
    os.link(out, previous_set)
    before = previous_set.read_bytes()
    write_cells_geoparquet(store, out, {**PROVENANCE, "slide": "another"})
    assert previous_set.read_bytes() == before and out.read_bytes() != before
