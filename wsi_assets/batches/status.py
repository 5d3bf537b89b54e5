"""Batch folders and their rejected files as rows of their user's upload status.

Each batch folder is one row: how many files it holds, the first names (MAX_NAMED_IMAGES, then
"… and K more"), and whether its last published run used them or it waits for one. A batch's run
writes its rejected files (file, why) to `rejected.json` in its result set; those are added as
`skipped` rows, so a user sees every file that was not used, slides and batch images alike, in
one table. Rejected images appear once the batch's run has looked at them (reading an image is
the run's work, not the sensor's). The work is bounded: a folder's names are listed (at most
MAX_LISTED_ENTRIES, no file is opened or stat-ed), and rejected.json is read up to MAX_REJECTED_BYTES.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wsi_assets.batches.scan import BatchFolder, list_batch_folders
from wsi_assets.core.keys import name_problem
from wsi_assets.core.user_files import slide_output_dir
from wsi_assets.uploads.listing import shown_name
from wsi_assets.uploads.status import PROCESSED, SKIPPED, WAITING, FileStatus

REJECTED_FILE = "rejected.json"
PUBLISHED_MANIFEST = "manifest.json"  # batches/manifest.py MANIFEST_FILE (not imported: that module pulls in image decoding)
# The upload sensor reads these every time a status changes: a run writes about 200 bytes per rejected image.
MAX_REJECTED_BYTES = 8 * 2**20
MAX_NAMED_IMAGES = 10
MAX_LISTED_ENTRIES = 20_000  # names read per batch folder and look; a bigger batch is "more than" that


def rejected_json(rejected: list[tuple[str, str]]) -> str:
    return json.dumps([{"file": name, "why": why} for name, why in rejected], indent=1)


def batch_statuses(root: Path) -> dict[str, list[FileStatus]]:
    """Per user: a row per batch folder, a `skipped` row per file its last run rejected, and refused batch folders."""
    root = Path(root)
    found: dict[str, list[FileStatus]] = {}
    folders, refused = list_batch_folders(root)
    for folder in folders:
        rejected = _rejected_rows(root, folder)
        found.setdefault(folder.key.user, []).append(_folder_row(root, folder, len(rejected)))
        found[folder.key.user].extend(rejected)
    for shown, why in refused:
        user, *_, name = shown.rstrip("/").split("/")
        if not name_problem(name, "batch"):  # a bad name is already a row of the upload listing
            found.setdefault(user, []).append(FileStatus(shown, SKIPPED, why, 0, 0))
    return found


def _rejected_rows(root: Path, folder: BatchFolder) -> list[FileStatus]:
    key = folder.key
    try:
        with open(slide_output_dir(root, key) / REJECTED_FILE, "rb") as handle:
            data = handle.read(MAX_REJECTED_BYTES + 1)
        rows = json.loads(data) if len(data) <= MAX_REJECTED_BYTES else []
    except Exception:  # noqa: BLE001 - not processed yet, unreadable or damaged: nothing to report, never a failed tick
        return []
    prefix = f"{key.user}/inputs/{key.branch}/{key.stem}/"
    return [
        FileStatus(prefix + str(row["file"]), SKIPPED, str(row["why"]), 0, 0)
        for row in (rows if isinstance(rows, list) else [])
        if isinstance(row, dict) and "file" in row and "why" in row
    ]


def _listed_names(path: Path) -> tuple[list[str], bool]:
    """The folder's visible entry names, sorted, and whether there were more than MAX_LISTED_ENTRIES."""
    names = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue  # temporary files of upload tools, as everywhere
                if len(names) == MAX_LISTED_ENTRIES:
                    return sorted(names), True
                names.append(entry.name)
    except OSError:
        pass  # unreadable now: the row says what it could see
    return sorted(names), False


def _folder_row(root: Path, folder: BatchFolder, rejected: int) -> FileStatus:
    key = folder.key
    names, more = _listed_names(folder.path)
    shown = ", ".join(shown_name(n) for n in names[:MAX_NAMED_IMAGES])
    rest = len(names) - MAX_NAMED_IMAGES
    if more:
        listed = f"more than {MAX_LISTED_ENTRIES} files: {shown}, …"
    else:
        listed = (
            f"{len(names)} file{'s' if len(names) != 1 else ''}"
            + (f": {shown}" if names else "")
            + (f" … and {rest} more" if rest > 0 else "")
        )
    try:
        folder_mtime = os.stat(folder.path).st_mtime_ns
    except OSError:
        folder_mtime = 0
    try:
        published = os.stat(slide_output_dir(root, key) / PUBLISHED_MANIFEST).st_mtime_ns
    except OSError:
        published = None
    if published is None:
        state, why = WAITING, f"batch of {listed}; its run is requested once the folder holds still"
    elif folder_mtime > published:
        state, why = (
            WAITING,
            f"batch of {listed}; files were added or removed since its last run, which runs again once the folder holds still",
        )
    else:
        skipped = f"; its last run skipped {rejected} (listed with why)" if rejected else ""
        state, why = PROCESSED, f"batch of {listed}; processed by its last run{skipped}"
    return FileStatus(f"{key.user}/inputs/{key.branch}/{key.stem}/", state, why, 0, folder_mtime)
