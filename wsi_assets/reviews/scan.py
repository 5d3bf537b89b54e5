"""One look over <user>/reviews/<branch>/: which review files are new or changed and stable, and which are refused and why.

Plain functions; `defs/reviews.py` turns the result into runs. Files are walked with the upload
rules (wsi_assets.uploads.listing: links out of the user's folder, hard links, odd names are
refused), and a file is taken once its size and mtime are unchanged across two looks.

Nothing here reads a review's contents: the import run checks them and leaves its verdict
(wsi_assets.reviews.import_verdicts). A look examines at most `max_files` changed files and stops
starting new ones after `max_seconds`; the rest are looked at next time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from wsi_assets.core.keys import name_problem
from wsi_assets.reviews.import_verdicts import read_verdict
from wsi_assets.reviews.review_geojson import MAX_REVIEW_GEOJSON_BYTES
from wsi_assets.reviews.slide_labels import MAX_SLIDE_LABELS_BYTES, SLIDE_LABELS_FILE
from wsi_assets.uploads.listing import UploadFile, list_review_uploads
from wsi_assets.uploads.scan import users_take_turns

REVIEW_SUFFIXES = (".geojson", ".json")


@dataclass(frozen=True)
class ReviewRequest:
    kind: str  # "cells" (a slide's QuPath file) or "labels" (the branch's slides.csv)
    user: str
    branch: str
    slide: str  # the slide stem for "cells"; "" for "labels"
    relpath: str
    size: int
    mtime_ns: int

    @property
    def partition_key(self) -> str:
        return f"{self.user}/{self.branch}/{self.slide}" if self.kind == "cells" else f"{self.user}/{self.branch}"

    @property
    def run_key(self) -> str:
        return f"review:{self.partition_key}:{self.size}:{self.mtime_ns}"


@dataclass
class ReviewScan:
    requests: list[ReviewRequest] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)


def review_problem(upload: UploadFile) -> str | None:
    """Why this file under reviews/ cannot be a review, or None."""
    if upload.problem is not None:
        return upload.problem
    name = upload.path.name
    if name == SLIDE_LABELS_FILE:
        limit = MAX_SLIDE_LABELS_BYTES
    elif upload.path.suffix.lower() in REVIEW_SUFFIXES:
        problem = name_problem(upload.stem, "slide")
        if problem:
            return problem
        limit = MAX_REVIEW_GEOJSON_BYTES
    else:
        return f"not a review: expected <slide>.geojson (QuPath's export) or {SLIDE_LABELS_FILE}"
    if upload.size > limit:
        return f"{upload.size / 1e6:.0f} MB is over the {limit // 2**20} MiB limit for this kind of review file"
    return None


def review_skip_reason(root: Path, upload: UploadFile) -> str | None:
    """Why no import run is started for this file: what needs no reading, or its import run's refusal of this very version."""
    problem = review_problem(upload)
    if problem is None and upload.user:
        verdict = read_verdict(root, upload.user, upload.branch, upload.path.name, upload.size, upload.mtime_ns)
        if verdict is not None and verdict.problem is not None:
            problem = verdict.problem
    return problem


def _checked(root: Path, upload: UploadFile) -> str | None:
    try:
        return review_skip_reason(root, upload)
    except Exception as error:  # noqa: BLE001 - one file's trouble is its own reason, never a failed tick
        return f"could not be checked ({type(error).__name__}); upload it again or remove it"


def _cursor(text: str | None) -> dict:
    try:
        cursor = json.loads(text) if text else {}
        return cursor if isinstance(cursor, dict) else {}
    except (ValueError, RecursionError):
        return {}


def scan_reviews(
    root, cursor_text: str | None, max_files: int = 500, max_seconds: float | None = None, clock=time.monotonic
) -> ReviewScan:
    """Compare the review folders with the cursor ({"done": {relpath: [size, mtime]}, "pending": {...}})."""
    deadline = None if max_seconds is None else clock() + max_seconds
    cursor = _cursor(cursor_text)
    done, pending = dict(cursor.get("done", {})), cursor.get("pending", {})
    result = ReviewScan()
    new_pending = {}
    entries = list_review_uploads(root)
    examined = 0
    for upload in users_take_turns([e for e in entries if done.get(e.relpath) != e.signature]):
        if examined >= max_files or (deadline is not None and examined and clock() >= deadline):
            if upload.relpath in pending:
                new_pending[upload.relpath] = pending[upload.relpath]  # keeps its first look
            continue  # looked at next time
        examined += 1
        problem = _checked(Path(root), upload)
        if problem is not None:
            result.skipped.append((upload.relpath, problem))
            done[upload.relpath] = upload.signature
            continue
        if pending.get(upload.relpath) != upload.signature:
            new_pending[upload.relpath] = upload.signature
            result.waiting.append((upload.relpath, "new or changed; imported once unchanged at the next look"))
            continue
        labels = upload.path.name == SLIDE_LABELS_FILE
        slide = "" if labels else upload.stem
        result.requests.append(
            ReviewRequest(
                "labels" if labels else "cells", upload.user, upload.branch, slide, upload.relpath, upload.size, upload.mtime_ns
            )
        )
        done[upload.relpath] = upload.signature
    listed = {e.relpath for e in entries}
    result.cursor = {"done": {k: v for k, v in done.items() if k in listed}, "pending": new_pending}
    return result
