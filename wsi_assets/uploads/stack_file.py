"""The uploaded TIFF behind a stack's partition key, confined to the user's own folder."""

from __future__ import annotations

from pathlib import Path

from wsi_assets.core.confinement import user_folder
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import branch_folders, the_one_upload
from wsi_assets.uploads.kinds import STACK_SUFFIXES
from wsi_assets.uploads.listing import upload_stem


def find_stack_file(root: Path, key: SlideKey) -> Path:
    """The one uploaded stack for `key` (`<stem>.ome.tif`, `<stem>.tif`, ...); a one-line error when none, several (case ignored), or not the user's own."""
    user_folder(root, key.user)
    found = sorted(
        entry
        for folder in branch_folders(root, key.user, key.branch)
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.is_file()
        and entry.suffix.lower() in STACK_SUFFIXES
        and upload_stem(entry.name).casefold() == key.stem.casefold()
    )
    return the_one_upload(
        found,
        root,
        key.user,
        f"no uploaded stack for {key}: expected {key.user}/inputs/{key.branch}/{key.stem}.ome.tif (or .tif)",
        lambda names: (
            f"{key} is ambiguous: {names} share the name '{key.stem}' (upper/lower case ignored: one output folder on SMB shares and macOS); rename one"
        ),
    )
