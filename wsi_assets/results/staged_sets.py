"""Result sets as slides, stacks and batches all keep them: staged per run, published whole by switching a link, swept once stale.

Layout, per slide, stack or batch (named by its key's stem):

    <user>/outputs/<branch>/<stem>                  link to .sets/<stem>/<set>: what readers open
    <user>/outputs/<branch>/.sets/<stem>/<run id>/  one run's set

A run's set is built under a temporary name and renamed into place, so a set that exists under its
run's name is whole from the start. It starts empty, or as hard links of another set's files (a
re-execution's parent run, or for slides the published set): writers only ever replace files
(atomic_output: write a temporary, rename it over), never modify one in place, so a hard-linked
file of the published set is never changed by a run.

Publishing is two calls around the check of what a whole set holds, which differs per kind:
`set_to_publish` gives the staged set, `switch_to_set` points the published link at it with one
rename. Readers see the previous whole set until that instant, and the new whole set after it. A
failed run publishes nothing; its set is swept by the next run of the same key.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.atomic import flush_folder_entries, flush_to_disk, is_temporary_name
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import (
    RESULT_SETS_FOLDER,
    branch_outputs_dir,
    result_sets_dir,
    slide_output_dir,
)
from wsi_assets.results.output_paths import (
    confine_slide_outputs,
    refuse_links_leading_out,
)
from wsi_assets.results.sweep import (
    sweep_stale_sets,
    sweep_switch_temporaries,
    sweep_temporaries,
)

SET_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class PublishedFolder:
    """What publishing did: the path readers open, the files of the set, and what was swept."""

    folder: Path
    files: int
    swept: tuple[str, ...]


def checked_set_name(run_id: str) -> str:
    """`run_id` as a set's folder name; ValueError for one that could name anything but a folder in .sets/<stem>/."""
    if not SET_NAME.match(run_id):
        raise ValueError(f"run id {run_id!r} cannot name a result set folder")
    return run_id


def published_set_dir(root: Path, key: SlideKey) -> Path | None:
    """The real folder the key's published path shows (a set, or a folder from before sets), or None.

    Raises PathOutsideUserFolder when a folder on the way leads out of the user's folder.
    """
    confine_slide_outputs(root, key)
    published = slide_output_dir(root, key)
    return published.resolve() if published.is_dir() else None


def stage_set(root: Path, key: SlideKey, run_id: str, base_run_id: str | None = None, from_published: bool = False) -> Path:
    """The run's own set folder, made on first use; checked to hold no link leading out of the user's folder.

    A new set starts as hard links of its parent run's set (`base_run_id`, for a re-execution)
    when that set still exists, else of the published set when `from_published`, else empty.
    Making it sweeps the key's stale sets; the published set is never swept.
    """
    home = confine_slide_outputs(root, key)
    sets = result_sets_dir(root, key)
    folder = sets / checked_set_name(run_id)
    if not folder.is_dir():
        parent = sets / base_run_id if base_run_id and SET_NAME.match(base_run_id) else None
        # A link among the sets is no set: its files could be anyone's.
        if parent is not None and parent.is_dir() and not parent.is_symlink():
            base: Path | None = parent
        else:
            base = published_set_dir(root, key) if from_published else None
        _build_set(folder, base, root, key.user, home)
        published = published_set_dir(root, key)
        sweep_stale_sets(
            sets, keep={folder.name} | ({published.name} if published and published.parent == sets.resolve() else set())
        )
        sweep_switch_temporaries(branch_outputs_dir(root, key.user, key.branch), key.stem)
    refuse_links_leading_out(folder, root, key.user, home)
    return folder


def set_to_publish(root: Path, key: SlideKey, run_id: str) -> Path | None:
    """The run's staged set, cleared of unfinished writes, for the caller to check whole; None when the run staged none."""
    home = confine_slide_outputs(root, key)
    folder = result_sets_dir(root, key) / checked_set_name(run_id)
    if not folder.is_dir():
        return None
    refuse_links_leading_out(folder, root, key.user, home)
    # Every step of this run has finished (the publishing step runs last), so any temporary
    # left in its set is an interrupted write's, and no part of the result.
    sweep_temporaries(folder)
    return folder


def incomplete_set_message(label: str, missing: list[str], hint: str = "") -> str:
    """Why a set is not published: the files it lacks (every kind says it in the same words)."""
    return f"{label}: this run's result set lacks {', '.join(missing)}; the previous results stay published{hint}"


def switch_to_set(root: Path, key: SlideKey, folder: Path) -> PublishedFolder:
    """Publish `folder` (from `set_to_publish`, checked whole), then sweep every other set of the key."""
    switch_published(root, key, folder.name)
    swept = sweep_stale_sets(folder.parent, keep={folder.name})
    swept += sweep_switch_temporaries(branch_outputs_dir(root, key.user, key.branch), key.stem)
    files = sum(len(names) for _, _, names in os.walk(folder))
    return PublishedFolder(slide_output_dir(root, key), files, tuple(swept))


def switch_published(root: Path, key: SlideKey, set_name: str) -> None:
    """Point <user>/outputs/<branch>/<stem> at the set `set_name` with one rename."""
    published = slide_output_dir(root, key)
    link = published.with_name(f".{published.name}.tmp-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.join(RESULT_SETS_FOLDER, key.stem, set_name), link)
    if published.is_dir() and not published.is_symlink():
        # A folder written before result sets existed: moved in among the sets once (and swept
        # as stale right after), since a link cannot replace a folder in one rename. Readers
        # find no folder for that instant, never a mixed one.
        os.rename(published, result_sets_dir(root, key) / f"legacy-{uuid.uuid4().hex[:8]}")
    # The set's hard links are entries of its folders: on disk before the link points at them, and
    # the switch itself on disk before anyone is told it was published.
    flush_to_disk(result_sets_dir(root, key) / set_name)
    os.replace(link, published)
    flush_folder_entries(published.parent)


def _build_set(folder: Path, base: Path | None, root: Path, user: str, home: Path) -> None:
    # Built under a temporary name: a set that exists under its run's name is whole from the start.
    temporary = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    temporary.mkdir(parents=True)
    try:
        if base is not None:
            refuse_links_leading_out(base, root, user, home)
            _link_tree(base, temporary)
        os.rename(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _link_tree(source: Path, target: Path) -> None:
    # Links inside a set (already refused when they lead out) are not carried: a set holds only
    # real files, so no write can follow one elsewhere in the user's folder (into their uploads).
    for entry in source.iterdir():
        if is_temporary_name(entry.name) or entry.is_symlink():
            continue
        destination = target / entry.name
        if entry.is_dir():
            destination.mkdir()
            _link_tree(entry, destination)
        elif entry.is_file():
            try:
                os.link(entry, destination, follow_symlinks=False)
            except OSError:  # a file system without hard links: a copy keeps the same guarantees
                shutil.copy2(entry, destination)
