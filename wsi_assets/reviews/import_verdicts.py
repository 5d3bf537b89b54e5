"""What the last import run of each review file found, for the user's upload status.

A review's contents are checked by its import run, never by a sensor (a 140 MB review takes
minutes to parse). The run leaves one small verdict per uploaded file:

    <user>/outputs/<branch>/.reviews/imports/<file>.json   {"size", "mtime_ns", "problem", "run_id"}

and the upload status reads it back: a verdict for the file's current size and modification time
says imported or refused (with the run's one-line reason); without one the file waits for its import.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.confinement import confined
from wsi_assets.core.user_files import branch_outputs_dir
from wsi_assets.reviews.review_geojson import ReviewFileError

VERDICTS_FOLDER = ".reviews/imports"  # beside the stored versions; slide names never start with '.'
MAX_VERDICT_BYTES = 64 * 1024  # a verdict is one line of JSON; anything larger was not written by a run


@dataclass(frozen=True)
class ImportVerdict:
    size: int
    mtime_ns: int
    problem: str | None  # the run's one-line reason, or None when the file was imported
    run_id: str


def verdict_path(root: Path, user: str, branch: str, file: str) -> Path:
    return branch_outputs_dir(root, user, branch) / VERDICTS_FOLDER / f"{file}.json"


def record_verdict(root: Path, user: str, branch: str, file: str, verdict: ImportVerdict) -> None:
    path = verdict_path(root, user, branch, file)
    existing = path.parent
    while not os.path.lexists(existing):
        existing = existing.parent
    confined(existing, root, user)  # before mkdir: a linked folder must not get a new folder in its target
    path.parent.mkdir(parents=True, exist_ok=True)
    confined(path.parent, root, user)
    write_text_atomic(
        path,
        json.dumps({"size": verdict.size, "mtime_ns": verdict.mtime_ns, "problem": verdict.problem, "run_id": verdict.run_id}),
    )


@contextmanager
def recording_import(root: Path, user: str, branch: str, upload: Path, run_id: str):
    """Record what the import inside the block found about `upload`: imported, or refused with its one line."""
    stat = os.stat(upload)
    try:
        yield
    except ReviewFileError as error:
        problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        with suppress(OSError):  # the file's own problem is the run's message, not a full disk's
            record_verdict(root, user, branch, upload.name, ImportVerdict(stat.st_size, stat.st_mtime_ns, problem, run_id))
        raise
    record_verdict(root, user, branch, upload.name, ImportVerdict(stat.st_size, stat.st_mtime_ns, None, run_id))


def read_verdict(root: Path, user: str, branch: str, file: str, size: int, mtime_ns: int) -> ImportVerdict | None:
    """The verdict on this very version of the file (same size and time), or None: none yet, stale, or unreadable."""
    path = verdict_path(root, user, branch, file)
    try:
        confined(path, root, user)
        with open(path, "rb") as handle:
            text = handle.read(MAX_VERDICT_BYTES + 1)
        if len(text) > MAX_VERDICT_BYTES:
            return None
        data = json.loads(text)
        verdict = ImportVerdict(int(data["size"]), int(data["mtime_ns"]), data["problem"], str(data.get("run_id", "")))
    except Exception:  # noqa: BLE001 - missing, damaged or foreign: the file waits for its import as if none
        return None
    if (verdict.size, verdict.mtime_ns) != (size, mtime_ns):
        return None
    if verdict.problem is not None:
        lines = str(verdict.problem).splitlines() or ["refused by its import run"]
        verdict = ImportVerdict(verdict.size, verdict.mtime_ns, lines[0][:500], verdict.run_id)
    return verdict
