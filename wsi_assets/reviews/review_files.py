"""Where a slide's or a branch's review file is uploaded, what a new version changed, and each file read back."""

from __future__ import annotations

import json
from pathlib import Path

from wsi_assets.core.confinement import confined_upload, user_folder
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import branch_folders, the_one_upload
from wsi_assets.reviews.review_geojson import ReviewedCells, parse_review_bytes
from wsi_assets.reviews.scan import REVIEW_SUFFIXES
from wsi_assets.reviews.slide_labels import SLIDE_LABELS_FILE, parse_slide_labels


def reviews_dir(root: Path, user: str, branch: str) -> Path:
    return Path(root) / user / "reviews" / branch


def _folders(root: Path, user: str, branch: str) -> list[Path]:
    return branch_folders(root, user, branch, area="reviews")


def find_cell_review(root: Path, key: SlideKey) -> Path:
    """The uploaded QuPath file of `key` (<slide>.geojson or .json), checked to be the user's own."""
    user_folder(root, key.user)
    found = [
        f / f"{key.stem}{s}"
        for f in _folders(root, key.user, key.branch)
        for s in REVIEW_SUFFIXES
        if (f / f"{key.stem}{s}").is_file()
    ]
    return the_one_upload(
        found,
        root,
        key.user,
        f"no review for {key}: export the corrected cells from QuPath to {key.user}/reviews/{key.branch}/{key.stem}.geojson",
        lambda names: f"{key} has several reviews ({names}); keep one",
    )


def find_slide_labels(root: Path, user: str, branch: str) -> Path:
    user_folder(root, user)
    found = [f / SLIDE_LABELS_FILE for f in _folders(root, user, branch) if (f / SLIDE_LABELS_FILE).is_file()]
    if not found:
        raise FileNotFoundError(f"no slide labels for {user}/{branch}: put them in {user}/reviews/{branch}/{SLIDE_LABELS_FILE}")
    confined_upload(found[0], root, user)
    return found[0]


def cell_review_changes(previous: bytes | None, new: bytes, shown: str = "the review") -> dict:
    """What a QuPath file's version changed against the one before, by feature id (and parses the new one)."""
    after = parse_review_bytes(new, shown)
    summary = {"cells": len(after.polygons), "regions": len(after.regions)}
    if previous is None:
        return summary
    before = parse_review_bytes(previous, "the previous version")
    old = dict(zip(before.feature_ids, before.classes))
    now = dict(zip(after.feature_ids, after.classes))
    summary.update(
        cells_added=len(now.keys() - old.keys()),
        cells_removed=len(old.keys() - now.keys()),
        cells_reclassified=sum(1 for k in now.keys() & old.keys() if now[k] != old[k]),
        regions_before=len(before.regions),
    )
    return summary


def slide_labels_changes(previous: bytes | None, new: bytes, shown: str = SLIDE_LABELS_FILE) -> dict:
    """Rows added, removed and changed (keyed by slide and annotator) against the previous slides.csv."""
    after = {(r.slide, r.annotator): r for r in parse_slide_labels(new, shown)}
    summary = {"rows": len(after)}
    if previous is None:
        return summary
    before = {(r.slide, r.annotator): r for r in parse_slide_labels(previous, "the previous slides.csv")}
    summary.update(
        rows_added=len(after.keys() - before.keys()),
        rows_removed=len(before.keys() - after.keys()),
        rows_changed=sum(1 for k in after.keys() & before.keys() if after[k] != before[k]),
    )
    return summary


def read_version_cells(path: Path, shown: str) -> ReviewedCells:
    return parse_review_bytes(Path(path).read_bytes(), shown)


def read_slide_metadata_mpp(metadata_json: Path) -> float:
    return float(json.loads(Path(metadata_json).read_text())["mpp"])
