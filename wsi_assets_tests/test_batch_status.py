"""A batch folder and its images show in the user's upload status: how many, which, processed or waiting, and what was skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wsi_assets.batches.status import MAX_NAMED_IMAGES, batch_statuses, rejected_json
from wsi_assets.uploads.status import PROCESSED, SKIPPED, WAITING

USER, BRANCH, BATCH = "lab", "main", "fields"
FOLDER_ROW = f"{USER}/inputs/{BRANCH}/{BATCH}/"


@pytest.fixture
def batch(tmp_path) -> Path:
    folder = tmp_path / USER / "inputs" / BRANCH / BATCH
    folder.mkdir(parents=True)
    for i in range(MAX_NAMED_IMAGES + 3):
        (folder / f"field{i:02d}.png").write_bytes(b"png")
    (folder / ".partial.png").write_bytes(b"")  # an upload tool's temporary file: not an image of the batch
    return tmp_path


def _publish(root: Path, rejected: list[tuple[str, str]]) -> None:
    """What a batch run publishes that the status reads: its manifest (only its time) and rejected.json."""
    published = root / USER / "outputs" / BRANCH / BATCH
    published.mkdir(parents=True)
    (published / "manifest.json").write_text("{}")
    (published / "rejected.json").write_text(rejected_json(rejected))


def _rows(root: Path) -> dict:
    return {s.path: s for s in batch_statuses(root)[USER]}


def test_a_new_batch_is_one_waiting_row_naming_its_first_images(batch):
    (row,) = _rows(batch).values()
    assert row.path == FOLDER_ROW and row.state == WAITING
    assert row.why.startswith(f"batch of {MAX_NAMED_IMAGES + 3} files: field00.png, field01.png")
    assert f"field{MAX_NAMED_IMAGES - 1:02d}.png … and 3 more" in row.why
    assert f"field{MAX_NAMED_IMAGES:02d}.png" not in row.why and ".partial" not in row.why


def test_a_processed_batch_lists_its_skipped_images_with_why(batch):
    folder = batch / USER / "inputs" / BRANCH / BATCH
    past = os.stat(folder).st_mtime_ns - 10**9
    os.utime(folder, ns=(past, past))
    _publish(batch, [("notes.txt", "is not a PNG, JPEG or TIFF image; remove it")])
    rows = _rows(batch)
    assert rows[FOLDER_ROW].state == PROCESSED and "its last run skipped 1" in rows[FOLDER_ROW].why
    assert rows[FOLDER_ROW + "notes.txt"].state == SKIPPED and "not a PNG" in rows[FOLDER_ROW + "notes.txt"].why


def test_images_added_after_the_run_make_the_batch_wait_again(batch):
    _publish(batch, [])
    manifest = batch / USER / "outputs" / BRANCH / BATCH / "manifest.json"
    past = os.stat(manifest).st_mtime_ns - 10**9
    os.utime(manifest, ns=(past, past))
    (batch / USER / "inputs" / BRANCH / BATCH / "field99.png").write_bytes(b"png")
    row = _rows(batch)[FOLDER_ROW]
    assert row.state == WAITING and "added or removed since its last run" in row.why and "… and 4 more" in row.why


def test_a_batch_folder_refused_for_its_name_clash_is_a_skipped_row(batch):
    (batch / USER / "inputs" / BRANCH / f"{BATCH}.svs").write_bytes(b"slide")
    row = _rows(batch)[FOLDER_ROW]
    assert row.state == SKIPPED and "rename the folder" in row.why


def test_a_huge_batch_is_counted_within_bounds(batch, monkeypatch):
    import wsi_assets.batches.status as status

    monkeypatch.setattr(status, "MAX_LISTED_ENTRIES", 5)
    row = _rows(batch)[FOLDER_ROW]
    assert row.why.startswith("batch of more than 5 files: field")


def test_the_upload_sensor_writes_the_batch_into_the_users_status(batch, dagster_instance):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    context = build_sensor_context(instance=dagster_instance, resources={"user_files": UserFilesResource(root=str(batch))})
    result = upload_sensor(context)
    assert result.run_requests == [], "a batch's images are never slides"
    status = json.loads((batch / USER / "outputs" / "upload_status.json").read_text())
    (row,) = [f for f in status["files"] if f["path"] == FOLDER_ROW]
    assert row["state"] == WAITING and "field00.png" in row["why"]
    (event,) = [e for e in result.asset_events if e.partition == USER]
    assert any(record.data["file"] == FOLDER_ROW for record in event.metadata["files_table"].records)
