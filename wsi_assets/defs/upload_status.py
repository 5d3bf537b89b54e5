"""`upload_status`: per user, every file under inputs/ and reviews/ and whether it was processed, waits, or was skipped and why.

An external asset partitioned by user: the upload sensor records a materialization for a user only
when that user's status changed, so the UI's partition view shows each user's current table, and
the event history shows how it got there. The same status is written for the user to
<user>/outputs/upload_status.json.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    AssetSpec,
    DynamicPartitionsDefinition,
    MetadataValue,
)

from wsi_assets.defs.metadata_tables import metadata_table
from wsi_assets.uploads.status import (
    PROCESSED,
    SKIPPED,
    STATUS_FILE,
    WAITING,
    FileStatus,
    counts,
    from_records,
    to_records,
)

users_partitions = DynamicPartitionsDefinition(name="users")

UPLOAD_STATUS_KEY = AssetKey("upload_status")
# The previous status is read back from the last materialization; beyond this many files the rest
# show "dealt with before this status was kept" after a restart, which is still true.
MAX_REMEMBERED_FILES = 5000
MAX_SHOWN_FILES = 200

upload_status = AssetSpec(
    key=UPLOAD_STATUS_KEY,
    group_name="uploads",
    kinds={"json"},
    partitions_def=users_partitions,
    description="Per user: every file under inputs/ and reviews/ and its state (processed, waiting, skipped) with why; kept current by upload_sensor.",
)


def previous_status(instance, user: str) -> dict[str, FileStatus]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=UPLOAD_STATUS_KEY, asset_partitions=[user]), limit=1
    ).records
    if not records:
        return {}
    materialization = records[0].asset_materialization
    files = materialization.metadata.get("files") if materialization else None
    data = getattr(files, "data", None)
    return from_records(data.get("files", [])) if isinstance(data, dict) else {}


def files_shown(statuses: list[FileStatus], limit: int = MAX_SHOWN_FILES) -> list[dict]:
    """The rows of the UI's table: problems first, so a capped table still shows what needs the user."""
    order = {SKIPPED: 0, WAITING: 1, PROCESSED: 2}
    rows = sorted(statuses, key=lambda s: (order.get(s.state, 3), s.path))
    return [{"file": s.path, "state": s.state, "why": s.why} for s in rows[:limit]]


def status_materialization(user: str, statuses: list[FileStatus], status_file) -> AssetMaterialization:
    found = counts(statuses)
    metadata = {
        "processed": found["processed"],
        "waiting": found["waiting"],
        "skipped": found["skipped"],
        "settings_files": found["settings"],
        # A table, not markdown: file names and reasons are the user's text, shown as typed.
        "files_table": metadata_table(files_shown(statuses), ("file", "state", "why")),
        "files": MetadataValue.json({"files": to_records(statuses[:MAX_REMEMBERED_FILES])}),
    }
    if len(statuses) > MAX_SHOWN_FILES:
        metadata["files_not_shown"] = f"{len(statuses) - MAX_SHOWN_FILES} more files: see {user}/outputs/{STATUS_FILE}"
    if status_file is not None:
        metadata["status_file"] = MetadataValue.path(str(status_file))
    return AssetMaterialization(asset_key=UPLOAD_STATUS_KEY, partition=user, metadata=metadata)
