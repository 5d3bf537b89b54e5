"""The user-file layout: where uploads are read from and where outputs are written."""

from __future__ import annotations

import os
from pathlib import Path

from wsi_assets.core.keys import DEFAULT_BRANCH, SlideKey

USER_FILES_ENV = "WSI_USER_FILES"

# Extensions OpenSlide reads as whole-slide images. A file with another extension is not a slide.
SLIDE_EXTENSIONS = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm"}
)


def default_user_files_root() -> Path:
    return Path(os.environ.get(USER_FILES_ENV, "user_files")).resolve()


def inputs_dir(root: Path, user: str) -> Path:
    return Path(root) / user / "inputs"


def branch_inputs_dir(root: Path, user: str, branch: str) -> Path:
    return inputs_dir(root, user) / branch


def slide_output_dir(root: Path, key: SlideKey) -> Path:
    return Path(root) / key.user / "outputs" / key.branch / key.stem


def slide_candidates(root: Path, key: SlideKey) -> list[Path]:
    """Uploaded files whose branch and stem match `key` (a file directly in inputs/ is branch main)."""
    folders = [branch_inputs_dir(root, key.user, key.branch)]
    if key.branch == DEFAULT_BRANCH:
        folders.append(inputs_dir(root, key.user))
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and entry.suffix.lower() in SLIDE_EXTENSIONS and entry.stem == key.stem:
                found.append(entry)
    return sorted(found)


def find_slide_file(root: Path, key: SlideKey) -> Path:
    """The one uploaded file behind `key`; a clear error when there is none or several."""
    found = slide_candidates(root, key)
    if not found:
        raise FileNotFoundError(
            f"no uploaded slide for {key}: expected {branch_inputs_dir(root, key.user, key.branch)}/"
            f"{key.stem}.<svs|tif|ndpi|...>"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise FileExistsError(f"{key} is ambiguous: {names} share the stem '{key.stem}'; rename one")
    return found[0]
