"""Every outline a slide's exports hold is a valid polygon by OGC rules, read back with shapely.

Valid: simple (no self-intersection or self-touch), at least 3 distinct vertices, closed where the
format closes rings, counter-clockwise in (x, y). Read from the session's process_slide runs (the
synthetic slide, and CMU-1 where ../shared has it), so no slide is processed for these tests;
COCO and YOLO (off by default) are written from the same stored cells.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
import yaml
from shapely.geometry import Polygon

from wsi_assets.cells.exports import coco, yolo
from wsi_assets.cells.outline_repair import valid_outlines
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets_tests.export_readers import read_cells_zarr_zip


def invalid_reasons(rings: list[np.ndarray], closed: bool) -> list[str]:
    """Why each invalid ring is not a valid counter-clockwise polygon (empty when all are).

    Checked in one vectorised shapely pass; the reasons are worked out for the failures only."""
    rings = [np.asarray(ring, np.float64).reshape(-1, 2) for ring in rings]
    reasons = {}
    for n, ring in enumerate(rings):
        if closed and (len(ring) < 4 or not np.array_equal(ring[0], ring[-1])):
            reasons[n] = "not closed"
    opened = [ring[:-1] if closed else ring for ring in rings]
    counts = np.array([len(ring) for ring in opened])
    for n in np.flatnonzero(counts < 3).tolist():
        reasons.setdefault(n, "fewer than 3 distinct vertices")
    usable = [n for n in range(len(rings)) if n not in reasons]
    if usable:
        xy = np.concatenate([opened[n] for n in usable])
        owner = np.repeat(np.arange(len(usable)), counts[usable])
        shapes = shapely.polygons(shapely.linearrings(xy[:, 0], xy[:, 1], indices=owner))
        valid, ccw = shapely.is_valid(shapes), shapely.is_ccw(shapely.get_exterior_ring(shapes))
        for k in np.flatnonzero(~valid | ~ccw).tolist():
            n = usable[k]
            distinct = len(np.unique(opened[n], axis=0))
            reasons[n] = (
                "fewer than 3 distinct vertices"
                if distinct < 3
                else shapely.is_valid_reason(shapes[k])
                if not valid[k]
                else "clockwise"
            )
    return [f"{n}: {why}" for n, why in sorted(reasons.items())]


def assert_valid(rings: list[np.ndarray], closed: bool, what: str) -> None:
    reasons = invalid_reasons(rings, closed)
    assert not reasons, f"{len(reasons)} of {len(rings)} {what} outlines are invalid, e.g. {reasons[:5]}"


def check_slide_exports(folder: Path, tmp_path: Path) -> int:
    """Asserts every export's outlines are valid; returns how many nuclei the slide has."""
    geojson = folder / "cells.geojson"
    opener = gzip.open if not geojson.exists() else open
    document = json.load(opener(geojson if geojson.exists() else folder / "cells.geojson.gz", "rt"))
    features = document["features"]
    assert {f["geometry"]["type"] for f in features} == {"Polygon"}
    assert_valid([f["geometry"]["coordinates"][0] for f in features], True, "GeoJSON")

    table = pq.read_table(folder / "cells.parquet", columns=["geometry"])
    shapes = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert_valid([np.asarray(s.exterior.coords) for s in shapes], True, "GeoParquet")

    csv = pd.read_csv(folder / "cells.csv", usecols=["polygon_coords"])
    assert_valid([json.loads(text) for text in csv["polygon_coords"]], False, "cells.csv")

    zarr = read_cells_zarr_zip(folder / "cells.zarr.zip")
    offsets, vertices = zarr["polygon_offsets"], zarr["polygon_vertices"]
    assert_valid([vertices[a:b] for a, b in zip(offsets[:-1], offsets[1:])], False, "Zarr")

    provenance = json.loads((folder / "summary.json").read_text())
    stored = folder / "segmentation" / "cells.parquet"
    slide_file = next(p for p in folder.parents[2].glob(f"inputs/{folder.parent.name}/{folder.name}.*"))
    settings = {
        "slide": provenance["slide"],
        "slide_file": slide_file.name,
        "slide_path": str(slide_file),
        "mpp": provenance["mpp"],
        "segmenter": "test",
        "segmenter_version": "1",
        "settings": {"tile_size": 1024},
    }
    coco.write_coco(stored, tmp_path / "coco", settings)
    annotations = json.loads((tmp_path / "coco" / "annotations.json").read_text())["annotations"]
    assert_valid([a["segmentation"][0] for a in annotations], False, "COCO")
    yolo.write_yolo(stored, tmp_path / "yolo", settings)
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["names"]
    lines = [
        line.split()[1:] for label in (tmp_path / "yolo" / "labels").glob("*.txt") for line in label.read_text().splitlines()
    ]
    assert_valid([np.asarray(values, np.float64) for values in lines], False, "YOLO")
    return len(features)


def test_synthetic_slide_exports_only_valid_outlines(processed_synthetic, tmp_path):
    _, _, folder = processed_synthetic
    assert check_slide_exports(folder, tmp_path) > 50


def test_real_slide_exports_only_valid_outlines(processed_cmu, tmp_path):
    """CMU-1 had 134 of 2,678 GeoJSON outlines invalid (95 ring self-intersections, 39 self-intersections)."""
    _, result, folder, _ = processed_cmu
    assert result.success
    assert check_slide_exports(folder, tmp_path) > 1500


def test_the_check_fails_on_the_outlines_labels_used_to_trace_to():
    """The shapes behind the invalid outlines: a one-pixel spur, two lobes touching at a corner,
    one pixel, a one-pixel line. Traced as before, each fails the check; the table's are valid."""
    labels = np.zeros((40, 40), np.int32)
    labels[2:8, 2:8] = 1
    labels[5, 8:12] = 1  # a one-pixel-wide spur: the contour goes out and back along it
    labels[12:16, 12:16] = 2
    labels[16:20, 16:20] = 2  # two lobes touching at one corner
    labels[25, 25] = 3
    labels[30, 5:15] = 4
    table = nuclei_from_labels(labels)
    assert_valid([table.polygon(i) for i in range(len(table))], False, "traced")
    # Before: the pixel-centre contours themselves (what the table held), checked the same way.
    import cv2

    traced = []
    for label in range(1, 5):
        contours, _ = cv2.findContours((labels == label).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        traced.append(max(contours, key=cv2.contourArea)[:, 0, :])
    assert len(invalid_reasons(traced, False)) == 4
    # And repairing keeps a valid outline's vertices (only its direction may change).
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], np.float32)
    offsets, vertices, repaired = valid_outlines(np.array([0, 4]), square)
    assert repaired == 0 and np.array_equal(vertices, square)
    offsets, vertices, repaired = valid_outlines(np.array([0, 4]), square[::-1])
    assert repaired == 0 and np.array_equal(vertices, square)


@pytest.mark.parametrize("labels", [np.ones((1, 1), np.int32), np.ones((1, 2), np.int32), np.eye(3, dtype=np.int32)])
def test_tiny_and_diagonal_nuclei_keep_a_polygon_with_area(labels):
    table = nuclei_from_labels(np.pad(labels, 2))
    assert len(table) == 1
    shape = Polygon(table.polygon(0))
    assert shape.is_valid and shape.area > 0 and shape.exterior.is_ccw
