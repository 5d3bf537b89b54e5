"""Rejected files of batches as rows of their user's upload status.

A batch's run writes its rejected files (file, why) to `rejected.json` in its result set; the
upload sensor adds them to the user's status as `skipped`, so a user sees every file that was
not used, slides and batch images alike, in one table. They appear once the batch's run has
looked at the files (reading an image is the run's work, not the sensor's).
"""

from __future__ import annotations

import json
from pathlib import Path

from wsi_assets.batches.scan import list_batch_folders
from wsi_assets.core.user_files import slide_output_dir
from wsi_assets.uploads.status import SKIPPED, FileStatus

REJECTED_FILE = "rejected.json"
# The upload sensor reads these every time a status changes: a run writes about 200 bytes per rejected image.
MAX_REJECTED_BYTES = 8 * 2**20


def rejected_json(rejected: list[tuple[str, str]]) -> str:
    return json.dumps([{"file": name, "why": why} for name, why in rejected], indent=1)


def batch_rejections(root: Path) -> dict[str, list[FileStatus]]:
    """Per user, a `skipped` status for each file the last published run of each batch rejected."""
    root = Path(root)
    found: dict[str, list[FileStatus]] = {}
    folders, _ = list_batch_folders(root)
    for folder in folders:
        key = folder.key
        published = slide_output_dir(root, key) / REJECTED_FILE
        try:
            with open(published, "rb") as handle:
                data = handle.read(MAX_REJECTED_BYTES + 1)
            rows = json.loads(data) if len(data) <= MAX_REJECTED_BYTES else []
        except Exception:  # noqa: BLE001 - not processed yet, unreadable or damaged: nothing to report, never a failed tick
            continue
        prefix = f"{key.user}/inputs/{key.branch}/{key.stem}/"
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and "file" in row and "why" in row:
                found.setdefault(key.user, []).append(FileStatus(prefix + str(row["file"]), SKIPPED, str(row["why"]), 0, 0))
    return found
