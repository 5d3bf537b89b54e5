"""Whether one listed upload can be a slide, and why not: the sensor, the status and `submit` share these."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import openslide

from wsi_assets.core.keys import SlideKey, name_problem
from wsi_assets.core.user_files import SLIDE_EXTENSIONS
from wsi_assets.slides.resolution import BRANCH_SETTINGS
from wsi_assets.uploads.listing import UploadFile, list_user_uploads


class UploadRefused(ValueError):
    """The upload behind a partition key is one the sensor would skip."""


Siblings = dict[tuple[str, str, str], list[UploadFile]]


SETTINGS_SUFFIXES = (".yaml", ".yml")


def settings_role(upload: UploadFile) -> str | None:
    """What a settings file in an inputs folder is for (wsi_assets.slides.resolution), or None.

    A settings file is read when a slide is processed; it is not an upload to process itself.
    """
    if upload.problem is not None or upload.path.suffix.lower() not in SETTINGS_SUFFIXES:
        return None
    if upload.path.name == BRANCH_SETTINGS:
        return (
            "branch settings (µm/px, exports, tile size, model for every slide of the branch); read when each slide is processed"
        )
    return f"settings for slide '{upload.path.stem}' (its µm/px); read when that slide is processed"


def file_problem(upload: UploadFile) -> str | None:
    """Why this upload is not a slide we can key, from the walk and its name alone."""
    if upload.problem is not None:
        return upload.problem
    suffix = upload.path.suffix.lower()
    if suffix not in SLIDE_EXTENSIONS:
        allowed = " ".join(sorted(SLIDE_EXTENSIONS))
        return f"not a slide: extension '{suffix or '(none)'}' is not one of {allowed}"
    return name_problem(upload.stem, "slide")


def group_key(upload: UploadFile) -> tuple[str, str, str]:
    # Case is ignored: outputs/<branch>/Case/ and outputs/<branch>/case/ are one folder on SMB shares and macOS.
    return (upload.user or "", upload.branch, upload.stem.casefold())


def siblings_of(entries: list[UploadFile]) -> Siblings:
    """Files that would share one partition key or one output folder (same user, branch and stem, case ignored)."""
    groups: Siblings = defaultdict(list)
    for upload in entries:
        if upload.problem is None and upload.path.suffix.lower() in SLIDE_EXTENSIONS:
            groups[group_key(upload)].append(upload)
    return groups


def upload_problem(upload: UploadFile, siblings: Siblings) -> str | None:
    """Every check that needs no file contents: the walk's verdict, the name, and ambiguity."""
    problem = file_problem(upload)
    if problem is None and len(siblings.get(group_key(upload), ())) > 1:
        group = siblings[group_key(upload)]
        names = ", ".join(sorted(f.relpath for f in group))
        if len({f.stem for f in group}) > 1:
            problem = (
                f"ambiguous: {names} have names that differ only in upper/lower case in branch '{upload.branch}': "
                "their output folders are one folder on case-insensitive file systems (SMB shares, macOS); rename or remove one"
            )
        else:
            problem = f"ambiguous: {names} share the slide name '{upload.stem}' in branch '{upload.branch}'; rename or remove one"
    return problem


def slide_format_problem(path: Path) -> str | None:
    """Why OpenSlide cannot read this file, from its header, or None when it can."""
    try:
        detected = openslide.OpenSlide.detect_format(str(path))
    except Exception as error:  # noqa: BLE001 - any read failure means "not readable"
        return f"not a slide OpenSlide can read ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    if detected is None:
        return "not a slide OpenSlide can read (unknown format or damaged file)"
    return None


def checked_upload(root: Path, key: SlideKey, format_problem=slide_format_problem) -> Path:
    """The upload behind `key` after every check the sensor makes; UploadRefused (one line) otherwise.

    `format_problem(path)` says why the file is not of the kind the job needs (by default: a slide).
    """
    entries = list_user_uploads(root, key.user)
    siblings = siblings_of(entries)
    matching = [e for e in entries if e.user == key.user and e.branch == key.branch and e.stem == key.stem]
    refusals = [(e, upload_problem(e, siblings)) for e in matching]
    good = [e for e, problem in refusals if problem is None]
    if not good:
        if refusals:
            upload, why = refusals[0]
            raise UploadRefused(f"{upload.relpath}: {why}")
        raise FileNotFoundError(
            f"no uploaded slide for {key}: expected {key.user}/inputs/{key.branch}/{key.stem}.<svs|tif|ndpi|...>"
        )
    problem = format_problem(good[0].path)
    if problem:
        raise UploadRefused(f"{good[0].relpath}: {problem}")
    return good[0].path
