"""Output folders confined to the user's own folder, checked before anything is written.

A user can turn any folder on the way to their results into a symbolic link: `outputs/`, a
branch folder, a slide's published folder, `segmentation/` inside a set. Writing through such a
link would put results (or overwrite files) wherever it leads, another user's outputs included.
Every output path is resolved and refused when its real location leaves <root>/<user>/.

A check cannot stop a link made between the check and the write; the set is checked again just
before it is published, and nothing outside the user's folder is ever deleted.
"""

from __future__ import annotations

import os
from pathlib import Path

from wsi_assets.core.confinement import PathOutsideUserFolder, shown_under_root, user_folder
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import (
    branch_outputs_dir,
    inputs_dir,
    outputs_dir,
    result_sets_dir,
    slide_output_dir,
)


def leads_outside(path: Path, home: Path) -> bool:
    """Whether `path` (a link followed, even a dangling one) really lies outside `home`."""
    resolved = Path(path).resolve()
    return resolved != home and home not in resolved.parents


def refuse_if_outside(path: Path, root: Path, user: str, home: Path) -> None:
    """PathOutsideUserFolder when `path` exists (or is a dangling link) and leads outside `home`."""
    if os.path.lexists(path) and leads_outside(path, home):
        # Where it leads is not said: it may be another user's folder, and the message is shown to this one.
        raise PathOutsideUserFolder(
            f"{shown_under_root(path, root)} is a link leading outside {user}/: "
            f"results are written only inside the user's own folder; replace the link with a real folder"
        )


def confine_slide_outputs(root: Path, key: SlideKey) -> Path:
    """Check every folder between <root>/<user>/ and the slide's result sets; return the real user folder.

    Raises PathOutsideUserFolder naming the first link that leads out, before anything is written.
    """
    home = user_folder(root, key.user)
    sets = result_sets_dir(root, key)
    for folder in (outputs_dir(root, key.user), branch_outputs_dir(root, key.user, key.branch), sets.parent, sets):
        refuse_if_outside(folder, root, key.user, home)
    refuse_if_outside(slide_output_dir(root, key), root, key.user, home)
    inputs = inputs_dir(root, key.user).resolve()
    real_sets = sets.resolve()
    if real_sets == inputs or inputs in real_sets.parents:
        raise PathOutsideUserFolder(
            f"{shown_under_root(outputs_dir(root, key.user), root)} leads into {key.user}/inputs/: uploads are never written to; "
            f"replace the link with a real folder"
        )
    return home


def refuse_links_leading_out(folder: Path, root: Path, user: str, home: Path) -> None:
    """Refuse a result set holding a link (e.g. `segmentation/`) whose target is outside the user's folder."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            if entry.is_symlink():
                refuse_if_outside(entry, root, user, home)
