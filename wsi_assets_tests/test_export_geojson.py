"""cells.geojson read back with a streaming parser (ijson) and held to QuPath's import rules."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
import shapely
from shapely.geometry import shape
from shapely.strtree import STRtree

from wsi_assets.cells.exports.cells_geojson import write_cells_geojson
from wsi_assets.cells.exports.qupath_features import CELL_ID_NAMESPACE
from wsi_assets.cells.classes import CLASS_COLOURS
from wsi_assets.cells.store import iter_cells
from wsi_assets_tests.qupath_geojson_checks import iter_features, qupath_import_problems
from wsi_assets.testing.synthetic_cells import TILE_PX, with_columns, write_grid_store

SLIDE = "lab/main/slide-1"
MPP = 0.5
TILES = (2, 3)  # rows, columns
SIZE = (TILES[1] * TILE_PX, TILES[0] * TILE_PX)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("geojson") / "cells.parquet"
    write_grid_store(path, *TILES, per_tile_side=12)
    return path


def provenance(**extra) -> dict:
    return {"slide": SLIDE, "mpp": MPP, "mpp_inferred": False, "segmenter": "test", "wsi_assets_version": "0", **extra}


def stored_cells(path) -> dict[int, tuple[shapely.Polygon, float, float, float]]:
    cells = {}
    for ids, nuclei, _ in iter_cells(path):
        for i, cell_id in enumerate(ids.tolist()):
            cells[cell_id] = (
                shapely.Polygon(nuclei.polygon(i)),
                nuclei.area_pixels[i],
                nuclei.centroid_x[i],
                nuclei.centroid_y[i],
            )
    return cells


def test_every_nucleus_is_a_detection_qupath_accepts_matching_the_table(store, tmp_path):
    out = tmp_path / "cells.geojson"
    assert write_cells_geojson(store, out, provenance()) == len(stored_cells(store))
    assert qupath_import_problems(out, SIZE, "detection") == []
    expected = stored_cells(store)
    seen = set()
    for feature in iter_features(out):
        measured = feature["properties"]["measurements"]
        cell_id = int(measured["Cell ID"])
        polygon, area, cx, cy = expected[cell_id]
        outline = shape(feature["geometry"])
        # Coordinates are written to 1/100 px.
        assert outline.symmetric_difference(polygon).area < 0.05 * polygon.length
        assert shapely.is_ccw(outline.exterior)
        assert measured["Nucleus: Area px"] == pytest.approx(area, abs=1e-3)
        assert measured["Nucleus: Area µm^2"] == pytest.approx(area * MPP * MPP, abs=1e-3)
        assert (measured["Centroid X px"], measured["Centroid Y px"]) == pytest.approx((cx, cy), abs=1e-3)
        assert feature["id"] == str(uuid.uuid5(CELL_ID_NAMESPACE, f"{SLIDE}/{cell_id}"))
        assert "classification" not in feature["properties"]  # no class column in this table
        seen.add(cell_id)
    assert seen == set(expected)


def test_ids_are_stable_across_writes_and_differ_between_slides(store, tmp_path):
    ids = []
    for name, slide in (("a.geojson", SLIDE), ("b.geojson", SLIDE), ("c.geojson", "lab/main/other")):
        write_cells_geojson(store, tmp_path / name, provenance(slide=slide))
        ids.append([f["id"] for f in iter_features(tmp_path / name)])
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])
    assert not set(ids[0]) & set(ids[2])


def test_classes_carry_a_colour_and_measurement_columns_pass_through(store, tmp_path):
    count = len(stored_cells(store))
    names = ["epithelial", "inflammatory", None, "mitotic figure"]
    classes = [names[i % 4] for i in range(count)]
    classified = with_columns(
        store, tmp_path / "classified.parquet", {"class": classes, "eccentricity": np.linspace(0, 1, count)}
    )
    out = tmp_path / "cells.geojson"
    write_cells_geojson(classified, out, provenance())
    assert qupath_import_problems(out, SIZE) == []
    for feature in iter_features(out):
        properties = feature["properties"]
        cell_id = int(properties["measurements"]["Cell ID"])
        name = classes[cell_id - 1]
        if name is None:
            assert "classification" not in properties
        else:
            assert properties["classification"]["name"] == name
            assert tuple(properties["classification"]["color"]) == CLASS_COLOURS.get(
                name, tuple(properties["classification"]["color"])
            )
        assert properties["measurements"]["eccentricity"] == pytest.approx((cell_id - 1) / (count - 1), abs=1e-4)


def test_the_checker_rejects_what_qupath_would_refuse(tmp_path):
    good = {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [5, 1], [5, 5], [1, 1]]]},
        "properties": {
            "objectType": "detection",
            "classification": {"name": "epithelial", "color": [1, 2, 3]},
            "measurements": {"a": 1.0},
        },
    }
    no_colour = json.loads(json.dumps(good)) | {"id": str(uuid.uuid4())}
    del no_colour["properties"]["classification"]["color"]
    outside = json.loads(json.dumps(good)) | {"id": str(uuid.uuid4())}
    outside["geometry"]["coordinates"][0][1] = [SIZE[0] + 10, 1]
    as_list = json.loads(json.dumps(good)) | {"id": str(uuid.uuid4())}
    as_list["properties"]["measurements"] = [{"name": "a", "value": 1.0}]
    cases = {"colour": no_colour, "outside": outside, "map": as_list, "repeated": good}
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [good, *cases.values()]}))
    problems = qupath_import_problems(path, SIZE)
    assert [p.split(":")[0] for p in problems] == ["feature 1", "feature 2", "feature 3", "feature 4"]
    assert "colour" in problems[0] and "outside" in problems[1] and "map" in problems[2] and "repeated" in problems[3]
    assert qupath_import_problems(path, SIZE, "cell")[0].endswith("expected 'cell'")


def test_cell_expansion_grows_cells_around_their_nuclei_inside_the_slide(store, tmp_path):
    # The set's layout: the writer finds the slide's size in slide_metadata.json beside segmentation/.
    (tmp_path / "segmentation").mkdir()
    stored = tmp_path / "segmentation" / "cells.parquet"
    os.link(store, stored)
    (tmp_path / "slide_metadata.json").write_text(json.dumps({"width": SIZE[0], "height": SIZE[1]}))
    out = tmp_path / "cells.geojson"
    # From the branch's settings, as carried in provenance.
    write_cells_geojson(stored, out, provenance(settings={"cell_expansion_um": 8.0}))
    assert qupath_import_problems(out, SIZE, "cell") == []
    cells, grew = [], 0
    for feature in iter_features(out):
        cell, nucleus = shape(feature["geometry"]), shape(feature["nucleusGeometry"])
        assert cell.buffer(0.05).covers(nucleus)
        assert cell.area <= nucleus.buffer(8.0 / MPP).area + 1
        grew += cell.area > nucleus.area * 1.5
        cells.append(cell)
    assert grew > len(cells) // 2  # 16 px of room on a ~85 px grid: most cells really grow
    tree = STRtree(cells)
    left, right = tree.query(cells, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(np.asarray(cells)[left[pairs]], np.asarray(cells)[right[pairs]]))
    assert overlap.sum() < 1.0  # neighbours meet on Voronoi edges; only rounding to 1/100 px overlaps
    xmin, ymin, xmax, ymax = shapely.total_bounds(cells)
    assert xmin == 0 and ymin == 0 and xmax <= SIZE[0] and ymax <= SIZE[1]  # the edge cells are clipped


def test_gzip_is_an_option_with_the_same_features(store, tmp_path):
    plain, packed = tmp_path / "cells.geojson", tmp_path / "cells.geojson.gz"
    write_cells_geojson(store, plain, provenance())
    write_cells_geojson(store, packed, provenance(), compress=True)
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and packed.stat().st_size < plain.stat().st_size / 2
    assert list(iter_features(packed)) == list(iter_features(plain))


def test_a_rewrite_never_modifies_a_hard_linked_previous_file(store, tmp_path):
    out = tmp_path / "cells.geojson"
    write_cells_geojson(store, out, provenance(slide="first"))
    previous_set = tmp_path / "previous.geojson"
    os.link(out, previous_set)  # how result sets share unchanged files
    before = previous_set.read_bytes()
    write_cells_geojson(store, out, provenance(slide="second"))
    assert previous_set.read_bytes() == before and out.read_bytes() != before
