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
    return {
        "type": "Feature",
        "geometry": json.loads(shapely.to_geojson(shapely.Point(x, y).buffer(6))),
        "properties": {"objectType": "detection", "classification": cls},
    }


# (content, reason): whether the file's import run finds the problem (its contents), or the sensor (its name, size, slide).
BAD = {
    "alice/reviews/main/broken.geojson": (b"{not json", True, "not valid JSON"),
    "alice/reviews/main/points.geojson": (
        json.dumps(
            [{"type": "Feature", "geometry": {"type": "Circle", "radius": 2}, "properties": {"objectType": "detection"}}]
        ).encode(),
        True,
        "geometry must be a Polygon",
    ),
    "alice/reviews/main/ghost.geojson": (json.dumps([_cell(10, 10)]).encode(), False, "no slide 'ghost' in alice/inputs/main/"),
    "alice/reviews/main/my review.geojson": (json.dumps([_cell(10, 10)]).encode(), False, "may only use letters, digits"),
    "alice/reviews/main/notes.txt": (b"hello", False, "not a review"),
    "alice/reviews/cohort/slides.csv": (b"slide,who\nmine,x\n", True, "annotator"),
}


def _execute(instance, root, job: str, key: str):
    from wsi_assets.definitions import defs

    run_config = {"resources": {"user_files": {"config": {"root": str(root)}}}}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, run_config=run_config, raise_on_error=False
    )


def test_bad_review_files_are_listed_with_their_reason_and_a_good_one_is_not(tmp_path, small_slide, instance):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    root = tmp_path / "user_files"
    for branch in ("main", "cohort"):
        (root / f"alice/inputs/{branch}").mkdir(parents=True)
        (root / f"alice/reviews/{branch}").mkdir(parents=True)
        shutil.copyfile(small_slide, root / f"alice/inputs/{branch}/mine.svs")
        shutil.copyfile(small_slide, root / f"alice/inputs/{branch}/broken.svs")
        shutil.copyfile(small_slide, root / f"alice/inputs/{branch}/points.svs")
    (root / "alice/reviews/main/mine.geojson").write_text(json.dumps([_cell(100, 100), _cell(200, 150, "inflammatory")]))
    (root / "alice/reviews/main/slides.csv").write_text("slide,annotator,adequacy\nmine,dr_a,adequate\n")
    for rel, (data, _, _) in BAD.items():
        (root / rel).write_bytes(data)
    huge = root / "alice/reviews/cohort/mine.geojson"
    with open(huge, "wb") as f:  # sparse: the size alone refuses it, nothing is read
        f.truncate(MAX_REVIEW_GEOJSON_BYTES + 1)
    before = {rel: (root / rel).read_bytes() for rel in BAD}

    def look() -> dict[str, dict]:
        context = build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))})
        upload_sensor(context)
        return {f["path"]: f for f in json.loads((root / "alice/outputs/upload_status.json").read_text())["files"]}

    # The sensor reads no contents: what needs reading waits for the file's import run.
    files = look()
    for rel, (_, content, reason) in BAD.items():
        if content:
            assert files[rel]["state"] == "waiting" and files[rel]["why"].startswith("waiting for its import"), files[rel]
        else:
            assert files[rel]["state"] == "skipped" and reason in files[rel]["why"] and "\n" not in files[rel]["why"], files[rel]
    assert (
        files["alice/reviews/cohort/mine.geojson"]["state"] == "skipped"
        and "MiB limit" in files["alice/reviews/cohort/mine.geojson"]["why"]
    )

    # The import runs check the contents and report here.
    instance.add_dynamic_partitions("slides", ["alice/main/mine", "alice/main/broken", "alice/main/points"])
    instance.add_dynamic_partitions("branches", ["alice/main", "alice/cohort"])
    for job, key in (
        ("review_slide", "alice/main/broken"),
        ("review_slide", "alice/main/points"),
        ("review_branch", "alice/cohort"),
    ):
        assert not _execute(instance, root, job, key).success
    for job, key in (("review_slide", "alice/main/mine"), ("review_branch", "alice/main")):
        _execute(instance, root, job, key)  # imported; the comparison needs a processed slide, which this test has not
    files = look()
    for rel, (_, _, reason) in BAD.items():
        assert files[rel]["state"] == "skipped", files[rel]
        assert reason in files[rel]["why"] and "\n" not in files[rel]["why"], files[rel]
    for good in ("alice/reviews/main/mine.geojson", "alice/reviews/main/slides.csv"):
        assert files[good]["state"] == "processed" and "imported into" in files[good]["why"], files[good]
    assert {rel: (root / rel).read_bytes() for rel in BAD} == before, "a review file was changed"

    # Fixing a file changes its verdict at the next look.
    (root / "alice/reviews/main/broken.geojson").unlink()
    (root / "alice/reviews/main/points.geojson").write_text(json.dumps([_cell(50, 50)]))
    os.utime(root / "alice/reviews/main/points.geojson", ns=(1, 10**18))
    files = look()
    assert "alice/reviews/main/broken.geojson" not in files
    assert files["alice/reviews/main/points.geojson"]["state"] == "waiting"  # a new version: its import run has not looked yet
