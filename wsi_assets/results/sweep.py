"""Removing what interrupted runs leave behind: whole staging sets, and temporaries of unfinished writes.

A run killed mid-write (the machine stopped, the process killed for memory) leaves its staging
set and `.<name>.tmp-…` files for ever: nothing else would ever look at them again. They are
swept when the next run of the same slide starts its set and when it publishes.

Assumption: runs of one branch execute one at a time (the run queue's per-branch limit), so
when a run of a slide sweeps, no other run of that slide is writing. A run launched around the
queue (`execute_in_process`, `dagster asset materialize`) at the same moment as another run of
the same slide can lose its staging set to this sweep; it then fails, and publishes nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wsi_assets.core.atomic import is_temporary_name


def remove_entry(entry: Path) -> None:
    """Delete a file, a link (never what it points to) or a folder tree (links inside are not followed)."""
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)


def sweep_stale_sets(sets_dir: Path, keep: set[str]) -> list[str]:
    """Remove every set (and half-built set) of one slide except those named in `keep`; their names."""
    if not sets_dir.is_dir():
        return []
    removed = []
    for entry in sorted(sets_dir.iterdir()):
        if entry.name not in keep:
            remove_entry(entry)
            removed.append(entry.name)
    return removed


def sweep_temporaries(folder: Path) -> list[str]:
    """Remove unfinished writes' temporaries anywhere in `folder`; their paths relative to it."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            if is_temporary_name(name):
                remove_entry(Path(dirpath) / name)
                removed.append((Path(dirpath) / name).relative_to(folder).as_posix())
        dirnames[:] = [name for name in dirnames if not is_temporary_name(name)]
    return removed


def sweep_switch_temporaries(branch_dir: Path, stem: str) -> list[str]:
    """Remove the half-made links (and pre-set folder swaps) of one slide's published folder."""
    if not branch_dir.is_dir():
        return []
    removed = []
    for entry in sorted(branch_dir.glob(f".{stem}.tmp-*")):
        remove_entry(entry)
        removed.append(entry.name)
    return removed
