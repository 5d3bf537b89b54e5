"""A sensor tick does bounded work whatever users upload: no contents are parsed in a tick, a tick
stops starting files at its deadline and resumes from its cursor, users take turns, and whatever
one file raises is that file's skip reason. A review's contents are checked by its import run,
which reports into the user's upload status."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import wsi_assets.slides.synthetic  # noqa: F401 - imported before the env guard's baseline (cv2 sets LD_LIBRARY_PATH)
from wsi_assets.uploads.scan import ScanCursor, scan_uploads
from wsi_assets.testing import hostile_files


@pytest.fixture(scope="module")
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


def tick(sensor, instance, root: Path, cursor: str | None = None):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource

    return sensor(
        build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor)
    )


def status_files(root: Path, user: str) -> dict[str, dict]:
    return {f["path"]: f for f in json.loads((root / user / "outputs/upload_status.json").read_text())["files"]}


def execute(instance, root: Path, job: str, key: str):
    from wsi_assets.definitions import defs

    run_config = {"resources": {"user_files": {"config": {"root": str(root)}}}}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, run_config=run_config, raise_on_error=False
    )


def failure_line(result) -> str:
    return [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error.message.strip()


def test_review_contents_wait_for_their_import_run_which_reports_into_the_status(tmp_path, small_slide, instance):
    from wsi_assets.defs.reviews import review_sensor
    from wsi_assets.defs.sensors import upload_sensor

    root = tmp_path / "user_files"
    for user in ("alice", "bob"):
        (root / user / "inputs/main").mkdir(parents=True)
    shutil.copyfile(small_slide, root / "alice/inputs/main/mine.svs")
    deep = hostile_files.deep_json(root / "alice/reviews/main/mine.geojson")
    labels = hostile_files.huge_csv_field(root / "alice/reviews/main/slides.csv")
    shutil.copyfile(small_slide, root / "bob/inputs/main/good.svs")

    # Neither file is read by a tick (parsing them raised RecursionError and csv.Error in the sensor).
    first = tick(upload_sensor, instance, root)
    second = tick(upload_sensor, instance, root, first.cursor)
    assert "bob/main/good" in [r.partition_key for r in second.run_requests]
    files = status_files(root, "alice")
    for rel in ("alice/reviews/main/mine.geojson", "alice/reviews/main/slides.csv"):
        assert files[rel]["state"] == "waiting" and files[rel]["why"].startswith("waiting for its import"), files[rel]

    # The review sensor starts both imports; each run refuses its file in one line and says so in the status.
    instance.add_dynamic_partitions("slides", ["alice/main/mine"])
    cursor = tick(review_sensor, instance, root).cursor
    requested = {r.partition_key: r.job_name for r in tick(review_sensor, instance, root, cursor).run_requests}
    assert requested == {"alice/main/mine": "review_slide", "alice/main": "review_branch"}
    instance.add_dynamic_partitions("branches", ["alice/main"])
    cells_run = execute(instance, root, "review_slide", "alice/main/mine")
    labels_run = execute(instance, root, "review_branch", "alice/main")
    assert not cells_run.success and not labels_run.success
    assert "mine.geojson is nested deeper than any QuPath export" in failure_line(cells_run)
    assert "slides.csv line 2: not readable as CSV (field larger than field limit" in failure_line(labels_run)

    tick(upload_sensor, instance, root, second.cursor)
    files = status_files(root, "alice")
    assert files["alice/reviews/main/mine.geojson"]["state"] == "skipped"
    assert "nested deeper than any QuPath export" in files["alice/reviews/main/mine.geojson"]["why"]
    assert files["alice/reviews/main/slides.csv"]["state"] == "skipped"
    assert "field larger than field limit" in files["alice/reviews/main/slides.csv"]["why"]

    # A file the status lists as skipped gets no run, even from a sensor that lost its cursor.
    assert tick(review_sensor, instance, root, tick(review_sensor, instance, root).cursor).run_requests == []

    # Fixed: a new version waits for its own import, and its run's success shows as imported.
    labels.write_text("slide,annotator,adequacy\nmine,dr_a,adequate\n")
    tick(upload_sensor, instance, root, second.cursor)
    assert status_files(root, "alice")["alice/reviews/main/slides.csv"]["state"] == "waiting"
    assert execute(instance, root, "review_branch", "alice/main").success
    tick(upload_sensor, instance, root, second.cursor)
    fixed = status_files(root, "alice")["alice/reviews/main/slides.csv"]
    assert fixed["state"] == "processed" and fixed["why"].startswith("slide labels: imported into slide_reviews by run"), fixed
    assert deep.read_bytes().startswith(b"[[[")  # inputs are only read


def test_a_tick_stops_at_its_deadline_and_users_take_turns(tmp_path, small_slide):
    for i in range(12):
        target = tmp_path / f"alice/inputs/main/s{i:02d}.svs"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(small_slide, target)
    (tmp_path / "bob/inputs/main").mkdir(parents=True)
    shutil.copyfile(small_slide, tmp_path / "bob/inputs/main/late.svs")  # the newest file of all

    class Clock:  # one second passes at each look at the clock: the deadline is reached after a few files
        now = 0.0

        def __call__(self):
            self.now += 1.0
            return self.now

    cursor, requested, ticks = ScanCursor(), [], 0
    while len(requested) < 13 and ticks < 20:
        result = scan_uploads(tmp_path, cursor, max_files_per_tick=500, max_seconds=4, clock=Clock())
        assert len(result.requests) + len(result.waiting) + len(result.skipped) <= 4
        requested += [r.key.partition_key for r in result.requests]
        cursor, ticks = result.cursor, ticks + 1
        if ticks == 2:
            assert "bob/main/late" in requested, "alice's twelve older files delayed bob's upload"
    assert sorted(requested) == sorted(["bob/main/late"] + [f"alice/main/s{i:02d}" for i in range(12)])
    assert len(cursor.serialize()) < 400, cursor.serialize()

    # The same when the bound is the number of files: 18 new files of alice's, 5 files a tick, bob within two ticks.
    for i in range(12, 30):
        shutil.copyfile(small_slide, tmp_path / f"alice/inputs/main/s{i:02d}.svs")
    shutil.copyfile(small_slide, tmp_path / "bob/inputs/main/later.svs")
    first = scan_uploads(tmp_path, cursor, max_files_per_tick=5)
    second = scan_uploads(tmp_path, first.cursor, max_files_per_tick=5)
    assert "bob/main/later" in [r.key.partition_key for r in second.requests]


def test_whatever_one_file_raises_is_its_skip_reason(tmp_path, small_slide, monkeypatch):
    from wsi_assets.uploads import scan

    for rel in ("alice/inputs/main/a.svs", "bob/inputs/main/b.svs"):
        (tmp_path / rel).parent.mkdir(parents=True)
        shutil.copyfile(small_slide, tmp_path / rel)
    real = scan.upload_kind

    def failing_for_alice(path):  # a reader failing deep inside, as a hostile file can make it
        if "alice" in str(path):
            raise RecursionError("maximum recursion depth exceeded")
        return real(path)

    monkeypatch.setattr(scan, "upload_kind", failing_for_alice)
    first = scan_uploads(tmp_path, ScanCursor())
    second = scan_uploads(tmp_path, first.cursor)
    assert [r.key.partition_key for r in second.requests] == ["bob/main/b"]
    why = dict(second.skipped)["alice/inputs/main/a.svs"]
    assert why.startswith("could not be checked (RecursionError: maximum recursion depth exceeded)") and "\n" not in why


def test_the_kind_check_reads_a_bounded_outline_of_a_tiff(tmp_path):
    from wsi_assets.uploads.kinds import STACK, SLIDE, upload_kind
    from wsi_assets.uploads.peek import MAX_DIRECTORIES, tiff_outline

    pages = hostile_files.many_pages_tiff(tmp_path / "pages.tif", 100_000)
    outline = tiff_outline(pages)
    assert (
        not outline.bounded and outline.directories == MAX_DIRECTORIES + 1 and "more than 1,024 images" in outline.why_unbounded
    )
    started = time.perf_counter()
    assert upload_kind(pages) == (STACK, None)  # same-sized one-pixel planes: a stack, checked by its run
    shutil.copyfile(pages, tmp_path / "pages.svs")
    assert upload_kind(tmp_path / "pages.svs") == (SLIDE, None)  # a slide's run checks it with OpenSlide
    assert time.perf_counter() - started < 1.0, "the libraries read all 100,000 directories (4 s and more)"

    bomb = hostile_files.tiff_bomb(tmp_path / "bomb.tif")  # one directory: small enough for the full check
    assert tiff_outline(bomb).bounded
    assert tiff_outline(hostile_files.deep_json(tmp_path / "x.tif")) is None  # not a TIFF: its first bytes say so
    assert upload_kind(tmp_path / "x.tif")[0] is None
