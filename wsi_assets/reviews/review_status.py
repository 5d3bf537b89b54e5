"""Where each file under <user>/reviews/ stands, for the user's upload status: imported, or refused and why.

The upload sensor adds these rows to the status it keeps for inputs/, so a pathologist sees a
review that cannot be imported (not JSON, not QuPath's shapes, a bad name, too large, a slide that
was never uploaded, bad slides.csv columns) beside the slides. A file's contents are checked once
per size and modification time: the status is rebuilt on many ticks, a file's verdict only when it
changes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from wsi_assets.core.confinement import PathOutsideUserFolder, confined_upload
from wsi_assets.core.user_files import SLIDE_EXTENSIONS
from wsi_assets.reviews.review_geojson import ReviewFileError, parse_review_bytes
from wsi_assets.reviews.scan import review_problem
from wsi_assets.reviews.slide_labels import SLIDE_LABELS_FILE, parse_slide_labels
from wsi_assets.uploads.listing import UploadFile, list_review_uploads
from wsi_assets.uploads.status import PROCESSED, SKIPPED, FileStatus

IMPORTED_CELLS = "review: imported by review_sensor into cell_review once unchanged across two looks"
IMPORTED_LABELS = "slide labels: imported by review_sensor into slide_reviews once unchanged across two looks"


@lru_cache(maxsize=1024)
def _content_problem(path: str, size: int, mtime_ns: int, root: str, user: str, labels: bool) -> str | None:
    try:
        data = confined_upload(Path(path), Path(root), user).read_bytes()
        if labels:
            parse_slide_labels(data, Path(path).name)
        else:
            parse_review_bytes(data, Path(path).name)
    except (ReviewFileError, PathOutsideUserFolder) as error:
        return str(error).splitlines()[0]
    except OSError as error:
        return f"cannot be read ({type(error).__name__}: {error.strerror or error})"
    return None


def review_file_problem(root: Path, upload: UploadFile, slide_stems: set[tuple[str, str]]) -> str | None:
    """Why this file under reviews/ cannot be imported, or None. `slide_stems`: (branch, stem) of the user's slide uploads."""
    problem = review_problem(upload)
    if problem is not None:
        return problem
    labels = upload.path.name == SLIDE_LABELS_FILE
    problem = _content_problem(str(upload.path), upload.size, upload.mtime_ns, str(root), upload.user or "", labels)
    if problem is None and not labels and (upload.branch, upload.stem) not in slide_stems:
        problem = f"no slide '{upload.stem}' in {upload.user}/inputs/{upload.branch}/: upload the slide (or name the review after it); it is imported then"
    return problem


def review_statuses(root: Path, input_entries: list[UploadFile]) -> dict[str, list[FileStatus]]:
    """Each user's review files with their state, from one walk of the review folders."""
    stems: dict[str, set[tuple[str, str]]] = {}
    for entry in input_entries:
        if entry.user is not None and entry.problem is None and entry.path.suffix.lower() in SLIDE_EXTENSIONS:
            stems.setdefault(entry.user, set()).add((entry.branch, entry.stem))
    statuses: dict[str, list[FileStatus]] = {}
    for upload in list_review_uploads(root):
        if upload.user is None:
            continue
        problem = review_file_problem(root, upload, stems.get(upload.user, set()))
        if problem is None:
            state, why = PROCESSED, IMPORTED_LABELS if upload.path.name == SLIDE_LABELS_FILE else IMPORTED_CELLS
        else:
            state, why = SKIPPED, problem
        statuses.setdefault(upload.user, []).append(FileStatus(upload.relpath, state, why, upload.size, upload.mtime_ns))
    return statuses
