"""Reviews through Dagster: the sensor requests the import, cell_review measures a QuPath edit of our own export, restore_review brings a version back."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import shapely

from wsi_assets_tests.conftest import PIPELINE_TILE_CORE_PX, run_process_slide


def _edited_export(outputs, region, delete: int, add_at: list[tuple[float, float]]):
    """The slide's cells.geojson as a reviewer returns it: a bare array, old-style measurements, some cells deleted, some drawn."""
    exported = json.loads((outputs / "cells.geojson").read_text())["features"]
    inside = [
        f
        for f in exported
        if region.contains(
            shapely.Point(f["properties"]["measurements"]["Centroid X px"], f["properties"]["measurements"]["Centroid Y px"])
        )
    ]
    kept = inside[delete:]
    for f in kept:
        f["properties"]["measurements"] = [{"name": k, "value": v} for k, v in f["properties"]["measurements"].items()]
    drawn = [
        {
            "type": "Feature",
            "geometry": json.loads(shapely.to_geojson(shapely.Point(x, y).buffer(8))),
            "properties": {"objectType": "detection", "classification": "inflammatory"},
        }
        for x, y in add_at
    ]
    annotation = {
        "type": "Feature",
        "geometry": json.loads(shapely.to_geojson(region)),
        "properties": {"objectType": "annotation"},
    }
    return kept + drawn + [annotation], len(inside)


def _execute(instance, job, key, run_config=None):
    from wsi_assets.definitions import defs

    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, run_config=run_config or {}, raise_on_error=False
    )


def _empty_spots(outputs, region, count):
    import pandas as pd

    cells = pd.read_csv(outputs / "cells.csv")
    spots = []
    x0, y0, x1, y1 = region.bounds
    for y in range(int(y0) + 20, int(y1) - 20, 23):
        for x in range(int(x0) + 20, int(x1) - 20, 23):
            if ((cells.centroid_x - x) ** 2 + (cells.centroid_y - y) ** 2).min() > 40**2:
                spots.append((float(x), float(y)))
                if len(spots) == count:
                    return spots
    return spots


@pytest.fixture(scope="module")
def reviewed_slide(tmp_path_factory, user_files_root, dagster_instance, pipeline_spec):
    """A processed slide of its own: review_slide publishes new result sets for it, which the tests
    of the session's shared pipeline slide must not see."""
    from wsi_assets.slides.synthetic import write_synthetic_slide

    source = tmp_path_factory.mktemp("reviewed") / "reviewed.svs"
    write_synthetic_slide(source, pipeline_spec)
    run_config = {"resources": {"segmentation": {"config": {"tile_core_px": PIPELINE_TILE_CORE_PX}}}}
    key, result = run_process_slide(dagster_instance, user_files_root, "alice", "main", source, "reviewed01", run_config)
    assert result.success, "process_slide failed on the slide to review"
    return key, result, user_files_root / "alice" / "outputs" / "main" / "reviewed01"


def test_a_qupath_edit_is_measured_versioned_and_restorable(reviewed_slide, dagster_instance, user_files_root):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.reviews import review_sensor
    from wsi_assets.reviews.version_store import history

    key, _, outputs = reviewed_slide
    region = shapely.box(1000, 1000, 3000, 2600)
    features, in_region = _edited_export(outputs, region, delete=7, add_at=_empty_spots(outputs, region, 3))
    assert in_region > 50
    folder = user_files_root / "alice" / "reviews" / "main"
    folder.mkdir(parents=True, exist_ok=True)
    upload = folder / "reviewed01.geojson"
    upload.write_text(json.dumps(features))
    (folder / "notes.txt").write_text("not a review")

    # The sensor waits for a second look, then asks for review_slide on the slide's partition.
    cursor = None
    for _ in range(2):
        context = build_sensor_context(instance=dagster_instance, cursor=cursor, resources={"user_files": UserFilesResource()})
        result = review_sensor(context)
        cursor = result.cursor
    # The session's user-files folder is shared: other tests' users may have reviews waiting too.
    alices = [(r.partition_key, r.job_name) for r in result.run_requests if r.partition_key.startswith("alice/")]
    assert alices == [(key, "review_slide")]
    assert "alice/reviews/main/notes.txt" in json.loads(cursor)["done"]  # refused once, with its reason in the log

    run = _execute(dagster_instance, "review_slide", key)
    assert run.success
    figures = json.loads((outputs / "review" / "cell_review.json").read_text())
    # Every model cell in the region was exported; the reviewer kept all but 7 and drew 3.
    assert (figures["model_cells"], figures["deleted"], figures["added"], figures["reshaped"]) == (in_region, 7, 3, 0)
    tp = in_region - 7
    assert figures["detection_f1"] == pytest.approx(2 * tp / (2 * tp + 7 + 3))
    # The model's cells carry classes (issue 14) and the reviewer kept them: compared, none changed.
    assert figures["classes_compared"] and figures["reclassified"] == 0
    matrix = np.array(figures["confusion_matrix"])
    assert matrix.trace() == matrix.sum() == tp
    assert (outputs / "review" / "disagreements.jpg").stat().st_size > 1000
    first_version = figures["provenance"]["version"]

    # A second version: everything in the region accepted. Both versions kept, then the first restored.
    second, _ = _edited_export(outputs, region, delete=0, add_at=[])
    upload.write_text(json.dumps(second))
    assert _execute(dagster_instance, "review_slide", key).success
    assert json.loads((outputs / "review" / "cell_review.json").read_text())["detection_f1"] == 1.0
    assert not _execute(dagster_instance, "restore_review", key).success  # no version named: refused
    restored = _execute(
        dagster_instance, "restore_review", key, {"ops": {"cell_review": {"config": {"restore_version": first_version[:12]}}}}
    )
    assert restored.success
    assert json.loads((outputs / "review" / "cell_review.json").read_text())["detection_f1"] == pytest.approx(
        figures["detection_f1"]
    )
    assert [e["action"] for e in history(user_files_root, "alice", "main", "reviewed01.geojson")] == [
        "import",
        "import",
        "restore",
    ]

    # A broken re-upload fails with one line; the upload is left as it is and nothing is logged.
    upload.write_bytes(b'{"type": "FeatureCollection", "features": 3}')
    before = hashlib.sha256(upload.read_bytes()).hexdigest()
    failed = _execute(dagster_instance, "review_slide", key)
    assert not failed.success
    failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = failure.step_failure_data.user_failure_data.description
    assert "reviewed01.geojson" in message and "'features' array" in message and "\n" not in message
    assert hashlib.sha256(upload.read_bytes()).hexdigest() == before
    assert len(history(user_files_root, "alice", "main", "reviewed01.geojson")) == 3


def _round_trip(folder, tmp_path):
    """The slide's own cells.geojson, 5 cells deleted and 1 reclassified, back through the review import."""
    from wsi_assets.cells.classes import CLASS_NAMES
    from wsi_assets.reviews.cell_review import review_slide_cells
    from wsi_assets.reviews.review_geojson import read_review_geojson

    document = json.loads((folder / "cells.geojson").read_text())
    features = document["features"]
    rng = np.random.default_rng(5)
    gone = set(rng.choice(len(features), 5, replace=False).tolist())
    kept = [f for n, f in enumerate(features) if n not in gone]
    changed = kept[len(kept) // 2]["properties"]["classification"]
    changed["name"] = next(name for name in CLASS_NAMES if name != changed["name"])
    review = tmp_path / "review.geojson"
    review.write_text(json.dumps({**document, "features": kept}))
    reviewer = read_review_geojson(review)
    assert reviewer.skipped == [] and len(reviewer.polygons) == len(features) - 5
    mpp = json.loads((folder / "summary.json").read_text())["mpp"]
    figures = review_slide_cells(folder / "segmentation" / "cells.parquet", reviewer, mpp).figures
    assert (figures["model_cells"], figures["deleted"], figures["added"], figures["reclassified"], figures["reshaped"]) == (
        len(features),
        5,
        0,
        1,
        0,
    )
    return figures


def test_the_synthetic_slides_own_export_edited_comes_back_in(processed_synthetic, tmp_path):
    _, _, folder = processed_synthetic
    assert _round_trip(folder, tmp_path)["paired"] > 50


def test_the_real_slides_own_export_edited_comes_back_in(processed_cmu, tmp_path):
    """Before: 'feature 262: geometry has no area' for a cell of 114 px² whose outline crossed itself."""
    _, _, folder, _ = processed_cmu
    assert _round_trip(folder, tmp_path)["paired"] > 1500
