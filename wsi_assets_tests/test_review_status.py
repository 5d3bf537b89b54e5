"""Review files in the user's upload status: each one that cannot be imported is listed with its one-line reason, a good one is not."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import shapely

from wsi_assets.reviews.review_geojson import MAX_REVIEW_GEOJSON_BYTES


@pytest.fixture(scope="module")
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


def _cell(x, y, cls="epithelial"):
    return {"type": "Feature", "geometry": json.loads(shapely.to_geojson(shapely.Point(x, y).buffer(6))), "properties": {"objectType": "detection", "classification": cls}}


BAD = {
    "alice/reviews/main/broken.geojson": (b"{not json", "not valid JSON"),
    "alice/reviews/main/points.geojson": (json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"objectType": "detection"}}]).encode(), "Polygon or MultiPolygon"),
    "alice/reviews/main/ghost.geojson": (json.dumps([_cell(10, 10)]).encode(), "no slide 'ghost' in alice/inputs/main/"),
    "alice/reviews/main/my review.geojson": (json.dumps([_cell(10, 10)]).encode(), "may only use letters, digits"),
    "alice/reviews/main/notes.txt": (b"hello", "not a review"),
    "alice/reviews/cohort/slides.csv": (b"slide,who\nmine,x\n", "annotator"),
}


def test_bad_review_files_are_listed_with_their_reason_and_a_good_one_is_not(tmp_path, small_slide, instance):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    root = tmp_path / "user_files"
    for branch in ("main", "cohort"):
        (root / f"alice/inputs/{branch}").mkdir(parents=True)
        (root / f"alice/reviews/{branch}").mkdir(parents=True)
        shutil.copyfile(small_slide, root / f"alice/inputs/{branch}/mine.svs")
    (root / "alice/reviews/main/mine.geojson").write_text(json.dumps([_cell(100, 100), _cell(200, 150, "inflammatory")]))
    (root / "alice/reviews/main/slides.csv").write_text("slide,annotator,adequacy\nmine,dr_a,adequate\n")
    for rel, (data, _) in BAD.items():
        (root / rel).write_bytes(data)
    huge = root / "alice/reviews/cohort/mine.geojson"
    with open(huge, "wb") as f:  # sparse: the size alone refuses it, nothing is read
        f.truncate(MAX_REVIEW_GEOJSON_BYTES + 1)
    before = {rel: (root / rel).read_bytes() for rel in BAD}

    context = build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))})
    upload_sensor(context)
    files = {f["path"]: f for f in json.loads((root / "alice/outputs/upload_status.json").read_text())["files"]}

    for rel, (_, reason) in BAD.items():
        assert files[rel]["state"] == "skipped", files[rel]
        assert reason in files[rel]["why"] and "\n" not in files[rel]["why"], files[rel]
    assert files["alice/reviews/cohort/mine.geojson"]["state"] == "skipped" and "MiB limit" in files["alice/reviews/cohort/mine.geojson"]["why"]
    for good in ("alice/reviews/main/mine.geojson", "alice/reviews/main/slides.csv"):
        assert files[good]["state"] == "processed", files[good]
    assert {rel: (root / rel).read_bytes() for rel in BAD} == before, "a review file was changed"

    # Fixing a file changes its verdict at the next look.
    (root / "alice/reviews/main/broken.geojson").unlink()
    (root / "alice/reviews/main/points.geojson").write_text(json.dumps([_cell(50, 50)]))
    os.utime(root / "alice/reviews/main/points.geojson", ns=(1, 10**18))
    upload_sensor(build_sensor_context(instance=instance, cursor=None, resources={"user_files": UserFilesResource(root=str(root))}))
    files = {f["path"]: f for f in json.loads((root / "alice/outputs/upload_status.json").read_text())["files"]}
    assert "alice/reviews/main/broken.geojson" not in files
    assert files["alice/reviews/main/points.geojson"]["state"] == "skipped"  # named after no slide: still refused, for that reason
    assert "no slide 'points'" in files["alice/reviews/main/points.geojson"]["why"]
