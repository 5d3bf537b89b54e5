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

from wsi_assets.uploads.status import (
    FileStatus,
    counts,
    from_records,
    markdown_table,
    to_records,
)

users_partitions = DynamicPartitionsDefinition(name="users")

UPLOAD_STATUS_KEY = AssetKey("upload_status")
# The previous status is read back from the last materialization; beyond this many files the rest
# show "dealt with before this status was kept" after a restart, which is still true.
MAX_REMEMBERED_FILES = 5000

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


def status_materialization(user: str, statuses: list[FileStatus], status_file) -> AssetMaterialization:
    found = counts(statuses)
    metadata = {
        "processed": found["processed"],
        "waiting": found["waiting"],
        "skipped": found["skipped"],
        "files_table": MetadataValue.md(markdown_table(statuses)),
        "files": MetadataValue.json({"files": to_records(statuses[:MAX_REMEMBERED_FILES])}),
    }
    if status_file is not None:
        metadata["status_file"] = MetadataValue.path(str(status_file))
    return AssetMaterialization(asset_key=UPLOAD_STATUS_KEY, partition=user, metadata=metadata)
