"""The uploaded TIFF behind a stack's partition key, confined to the user's own folder."""

from __future__ import annotations

from pathlib import Path

from wsi_assets.core.confinement import confined_upload, user_folder
from wsi_assets.core.keys import DEFAULT_BRANCH, SlideKey
from wsi_assets.core.user_files import branch_inputs_dir, inputs_dir
from wsi_assets.uploads.kinds import STACK_SUFFIXES
from wsi_assets.uploads.listing import upload_stem


def find_stack_file(root: Path, key: SlideKey) -> Path:
    """The one uploaded stack for `key` (`<stem>.ome.tif`, `<stem>.tif`, ...); a one-line error when none, several, or not the user's own."""
    user_folder(root, key.user)
    folders = [branch_inputs_dir(root, key.user, key.branch)]
    if key.branch == DEFAULT_BRANCH:
        folders.append(inputs_dir(root, key.user))
    found = sorted(
        entry
        for folder in folders
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.is_file() and entry.suffix.lower() in STACK_SUFFIXES and upload_stem(entry.name) == key.stem
    )
    if not found:
        raise FileNotFoundError(f"no uploaded stack for {key}: expected {key.user}/inputs/{key.branch}/{key.stem}.ome.tif (or .tif)")
    if len(found) > 1:
        raise FileExistsError(f"{key} is ambiguous: {', '.join(p.name for p in found)} share the name '{key.stem}'; rename one")
    confined_upload(found[0], root, key.user)
    return found[0]
