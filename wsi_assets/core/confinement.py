"""Tenant isolation: every path a user's run reads or writes must stay inside <root>/<user>/.

Paths are resolved (symbolic links followed) before they are checked, so a link in one user's
folder to another user's slide, to a folder outside the upload root, or an `outputs/` folder
linked elsewhere, is refused rather than followed.

Hard links: a hard link is the same file under two names, and nothing on the file says which
name came first, so whose file it is cannot be told. An upload with more than one link is
refused; the user copies it instead.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathOutsideUserFolder(PermissionError):
    """A path leaves the user's own folder (through a link, '..' or a mount)."""


class HardLinkedUpload(PermissionError):
    """An uploaded file has more than one name on disk."""


def user_folder(root: Path, user: str) -> Path:
    """<root>/<user>, resolved; the user folder itself must be a real folder inside the root."""
    real_root = Path(root).resolve()
    folder = real_root / user
    resolved = folder.resolve()
    if resolved != folder:
        raise PathOutsideUserFolder(
            f"{user}/ is a link: a user folder must be a real folder inside the upload root; replace the link with the folder"
        )
    return resolved


def confined(path: Path, root: Path, user: str) -> Path:
    """`path` resolved, or PathOutsideUserFolder when its real location is outside <root>/<user>/."""
    home = user_folder(root, user)
    # Where the target is, is not said: it may be another user's file.
    resolved = Path(path).resolve()
    if resolved != home and home not in resolved.parents:
        shown = shown_under_root(path, root)
        raise PathOutsideUserFolder(
            f"{shown} leads outside {user}/: links out of a user's own folder are refused; copy the file in instead"
        )
    return resolved


def confined_upload(path: Path, root: Path, user: str) -> Path:
    """An uploaded file's real path, refused when it leaves the user's folder or is hard-linked."""
    resolved = confined(path, root, user)
    refuse_hard_links(os.stat(resolved).st_nlink, shown_under_root(path, root))
    return resolved


def refuse_hard_links(links: int, shown: str) -> None:
    """HardLinkedUpload when a user's file has more than one name (`links`); `shown` names it as the user knows it."""
    if links > 1:
        raise HardLinkedUpload(
            f"{shown} is hard-linked ({links} names for one file), so whose file it is cannot be told; upload a copy instead"
        )


def shown_under_root(path: Path, root: Path) -> str:
    """`path` as a user sees it in messages: relative to the user-files root (as given, or resolved), else whole."""
    path = Path(path).absolute()
    for base in (Path(root).absolute(), Path(root).resolve()):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)
