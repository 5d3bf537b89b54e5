"""Where each file under <user>/reviews/ stands, for the user's upload status: imported, refused and why, or waiting for its import.

The upload sensor adds these rows to the status it keeps for inputs/, so a pathologist sees a
review that cannot be imported beside the slides. Only what needs no reading is judged here (the
name, the size, links, whether its slide was uploaded): the contents (not JSON, not QuPath's
shapes, bad slides.csv columns) are checked by the file's import run, whose verdict
(wsi_assets.reviews.import_verdicts) is shown for the file's current size and modification time.
Until that run has looked, the file waits for its import.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.core.user_files import SLIDE_EXTENSIONS
from wsi_assets.reviews.import_verdicts import read_verdict
from wsi_assets.reviews.scan import review_problem
from wsi_assets.reviews.slide_labels import SLIDE_LABELS_FILE
from wsi_assets.uploads.listing import UploadFile, list_review_uploads
from wsi_assets.uploads.status import PROCESSED, SKIPPED, WAITING, FileStatus

WAITING_FOR_IMPORT = (
    "waiting for its import: review_sensor starts the import run once the file is unchanged across two looks; "
    "the run checks its contents and its verdict shows here"
)
IMPORTED_CELLS = "review: imported into cell_review by run {run}"
IMPORTED_LABELS = "slide labels: imported into slide_reviews by run {run}"


def review_file_status(root: Path, upload: UploadFile, slide_stems: set[tuple[str, str]]) -> tuple[str, str]:
    """(state, why) of one file under reviews/. `slide_stems`: (branch, stem) of the user's slide uploads."""
    problem = review_problem(upload)
    if problem is not None:
        return SKIPPED, problem
    labels = upload.path.name == SLIDE_LABELS_FILE
    if not labels and (upload.branch, upload.stem) not in slide_stems:
        return (
            SKIPPED,
            f"no slide '{upload.stem}' in {upload.user}/inputs/{upload.branch}/: upload the slide (or name the review after it); it is imported then",
        )
    verdict = read_verdict(root, upload.user or "", upload.branch, upload.path.name, upload.size, upload.mtime_ns)
    if verdict is None:
        return WAITING, WAITING_FOR_IMPORT
    if verdict.problem is not None:
        return SKIPPED, verdict.problem
    return PROCESSED, (IMPORTED_LABELS if labels else IMPORTED_CELLS).format(run=verdict.run_id[:8] or "?")


def review_statuses(root: Path, input_entries: list[UploadFile]) -> dict[str, list[FileStatus]]:
    """Each user's review files with their state, from one walk of the review folders (no file is read)."""
    stems: dict[str, set[tuple[str, str]]] = {}
    for entry in input_entries:
        if entry.user is not None and entry.problem is None and entry.path.suffix.lower() in SLIDE_EXTENSIONS:
            stems.setdefault(entry.user, set()).add((entry.branch, entry.stem))
    statuses: dict[str, list[FileStatus]] = {}
    for upload in list_review_uploads(root):
        if upload.user is None:
            continue
        try:
            state, why = review_file_status(Path(root), upload, stems.get(upload.user, set()))
        except Exception as error:  # noqa: BLE001 - one file's trouble is its own reason, never a failed tick
            state, why = SKIPPED, f"could not be checked ({type(error).__name__}); upload it again or remove it"
        statuses.setdefault(upload.user, []).append(FileStatus(upload.relpath, state, why, upload.size, upload.mtime_ns))
    return statuses
