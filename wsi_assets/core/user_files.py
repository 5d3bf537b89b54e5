"""The user-file layout: where uploads are read from and where outputs are written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from wsi_assets.core.confinement import confined_upload, user_folder
from wsi_assets.core.keys import DEFAULT_BRANCH, SlideKey

USER_FILES_ENV = "WSI_USER_FILES"

# Extensions OpenSlide reads as whole-slide images. A file with another extension is not a slide.
SLIDE_EXTENSIONS = frozenset({".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm"})


def default_user_files_root() -> Path:
    return Path(os.environ.get(USER_FILES_ENV, "user_files")).resolve()


def inputs_dir(root: Path, user: str) -> Path:
    return Path(root) / user / "inputs"


def branch_inputs_dir(root: Path, user: str, branch: str) -> Path:
    return inputs_dir(root, user) / branch


def outputs_dir(root: Path, user: str) -> Path:
    return Path(root) / user / "outputs"


def branch_outputs_dir(root: Path, user: str, branch: str) -> Path:
    return outputs_dir(root, user) / branch


def slide_output_dir(root: Path, key: SlideKey) -> Path:
    """The published folder readers open: a link to the slide's current result set (see wsi_assets.results)."""
    return branch_outputs_dir(root, key.user, key.branch) / key.stem


# Slide names never start with '.', so this folder cannot collide with a slide's published folder.
RESULT_SETS_FOLDER = ".sets"


def result_sets_dir(root: Path, key: SlideKey) -> Path:
    """Where a slide's result sets live, one folder per run: <user>/outputs/<branch>/.sets/<slide>/."""
    return branch_outputs_dir(root, key.user, key.branch) / RESULT_SETS_FOLDER / key.stem


def branch_folders(root: Path, user: str, branch: str, area: str = "inputs") -> list[Path]:
    """`<user>/<area>/<branch>/`, and for branch main `<user>/<area>/` too: a file directly there is branch main."""
    folders = [Path(root) / user / area / branch]
    if branch == DEFAULT_BRANCH:
        folders.append(Path(root) / user / area)
    return folders


def the_one_upload(found: list[Path], root: Path, user: str, missing: str, several: Callable[[str], str]) -> Path:
    """The single file of `found`, checked to be `user`'s own; `missing` or `several(names)` as the error otherwise.

    Raises FileNotFoundError, FileExistsError, or PathOutsideUserFolder / HardLinkedUpload (both
    PermissionError), so no run ever reads another user's upload.
    """
    if not found:
        raise FileNotFoundError(missing)
    if len(found) > 1:
        raise FileExistsError(several(", ".join(p.name for p in found)))
    confined_upload(found[0], root, user)
    return found[0]


def slide_candidates(root: Path, key: SlideKey) -> list[Path]:
    """Uploaded files whose branch and stem match `key`, case ignored (a file directly in inputs/ is branch main)."""
    found = []
    for folder in branch_folders(root, key.user, key.branch):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            # is_file() is False for link loops and dangling links, and follows other links: refused later.
            if entry.is_file() and entry.suffix.lower() in SLIDE_EXTENSIONS and entry.stem.casefold() == key.stem.casefold():
                found.append(entry)
    return sorted(found)


def find_slide_file(root: Path, key: SlideKey) -> Path:
    """The one uploaded file behind `key`; a clear error when there is none or several, or when it is not the user's own.

    Raises PathOutsideUserFolder (a link out of <root>/<user>/, or a linked user folder) and
    HardLinkedUpload, both PermissionError, so no run ever reads another user's slide.
    """
    user_folder(root, key.user)
    return the_one_upload(
        slide_candidates(root, key),
        root,
        key.user,
        f"no uploaded slide for {key}: expected {branch_inputs_dir(root, key.user, key.branch)}/{key.stem}.<svs|tif|ndpi|...>",
        lambda names: (
            f"{key} is ambiguous: {names} share the stem '{key.stem}' (upper/lower case ignored: one output folder on SMB shares and macOS); rename one"
        ),
    )
