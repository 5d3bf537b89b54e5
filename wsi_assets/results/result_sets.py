"""A slide's outputs as one result set: each run stages its own, then publishes it in one step.

Layout, per slide:

    <user>/outputs/<branch>/<slide>                  link to .sets/<slide>/<set>: what readers open
    <user>/outputs/<branch>/.sets/<slide>/<run id>/  one run's set: metadata, tissue, cells, exports

A run's set is made on first use from the published one by hard links, so a partial job
(`export_cells`, `tissue_mask_only`) still holds its upstream files. Writers only ever replace
files (atomic_output: write a temporary, rename it over), never modify one in place, so a
hard-linked file of the published set is never changed by a run. When a stage is rewritten,
the stages after it are dropped from the run's set: cells found on an earlier tissue mask, or
exports of earlier cells, would no longer belong to it.

Publishing checks that the set is whole, then points the published link at it with one rename:
readers see the previous whole set until that instant, and the new whole set after it. A failed
run publishes nothing; its set is swept by the slide's next run.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.atomic import is_temporary_name
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.slide_outputs import STAGES, MissingUpstreamOutput, SlideOutputs
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
from wsi_assets.results.slide_identity import ensure_unchanged, load_identity
from wsi_assets.results.sweep import (
    remove_entry,
    sweep_stale_sets,
    sweep_switch_temporaries,
    sweep_temporaries,
)

SET_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class IncompleteResultSet(MissingUpstreamOutput):
    """A run's result set lacks a file of a stage it holds, so it cannot be published."""


@dataclass(frozen=True)
class PublishedSet:
    folder: Path
    stage: str
    files: int
    swept: tuple[str, ...]


def _checked_set_name(run_id: str) -> str:
    if not SET_NAME.match(run_id):
        raise ValueError(f"run id {run_id!r} cannot name a result set folder")
    return run_id


def published_set_dir(root: Path, key: SlideKey) -> Path | None:
    """The real folder the slide's published path shows (a set, or a folder from before sets), or None."""
    published = slide_output_dir(root, key)
    return published.resolve() if published.is_dir() else None


def stage_run_set(root: Path, key: SlideKey, run_id: str, stage: str, base_run_id: str | None = None) -> SlideOutputs:
    """The run's own set, ready for `stage` to write into: made on first use, later stages dropped.

    The set starts as the published set (or, for a re-execution, its parent run's set) by hard
    links. Making it sweeps the slide's stale sets; the published set is never swept.
    """
    home = confine_slide_outputs(root, key)
    sets = result_sets_dir(root, key)
    folder = sets / _checked_set_name(run_id)
    if not folder.is_dir():
        parent = sets / base_run_id if base_run_id and SET_NAME.match(base_run_id) else None
        base = parent if parent is not None and parent.is_dir() else published_set_dir(root, key)
        _build_set(folder, base, root, key.user, home)
        published = published_set_dir(root, key)
        sweep_stale_sets(sets, keep={folder.name} | ({published.name} if published and published.parent == sets.resolve() else set()))
        sweep_switch_temporaries(branch_outputs_dir(root, key.user, key.branch), key.stem)
    refuse_links_leading_out(folder, root, key.user, home)
    outputs = SlideOutputs(folder)
    later = STAGES[STAGES.index(stage) + 1 :]
    for entry in list(folder.iterdir()):
        if outputs.stage_of(entry.name) in later:
            remove_entry(entry)
    return outputs


def read_run_set(root: Path, key: SlideKey, run_id: str) -> SlideOutputs:
    """What a run's checks read: the run's staged set when it has one, else the published set."""
    confine_slide_outputs(root, key)
    folder = result_sets_dir(root, key) / _checked_set_name(run_id)
    return SlideOutputs(folder) if folder.is_dir() else SlideOutputs.for_key(root, key)


def publish_run_set(
    root: Path,
    key: SlideKey,
    run_id: str,
    export_files: tuple[str, ...],
    slide_file: Path | None,
    before_switch: Callable[[SlideOutputs, str], None] | None = None,
) -> PublishedSet | None:
    """Switch the slide's published folder to the run's set once it is whole; None when the run staged nothing.

    `slide_file` is the upload as it is now: a set made from a file that has since changed is
    not published. Publishing sweeps every other set of the slide. `before_switch(set, stage)`
    runs once the set is known whole, while the previous set is still published: what it
    writes into the set (report.html) is published with it.
    """
    home = confine_slide_outputs(root, key)
    sets = result_sets_dir(root, key)
    folder = sets / _checked_set_name(run_id)
    if not folder.is_dir():
        return None
    refuse_links_leading_out(folder, root, key.user, home)
    # Every step of this run has finished (the publishing step runs last), so any temporary
    # left in its set is an interrupted write's, and no part of the result.
    sweep_temporaries(folder)
    outputs = SlideOutputs(folder)
    stage = whole_stage(outputs, export_files, key.partition_key)
    if slide_file is not None:
        ensure_unchanged(load_identity(outputs), slide_file, root)
    if before_switch is not None:
        before_switch(outputs, stage)
    switch_published(root, key, folder.name)
    swept = sweep_stale_sets(sets, keep={folder.name})
    swept += sweep_switch_temporaries(branch_outputs_dir(root, key.user, key.branch), key.stem)
    files = sum(len(names) for _, _, names in os.walk(folder))
    return PublishedSet(slide_output_dir(root, key), stage, files, tuple(swept))


def whole_stage(outputs: SlideOutputs, export_files: tuple[str, ...], label: str) -> str:
    """The last stage a set holds, once every file of it and of the stages before it is there.

    Cells stand only with their exports: a reader of a slide with cells expects cells.csv.
    """
    required = outputs.stage_required(tuple(export_files))
    held = [i for i, stage in enumerate(STAGES) if any(path.exists() for path in required[stage])]
    if not held:
        raise IncompleteResultSet(f"{label}: this run's result set holds no results; nothing was published")
    last = max(held)
    if STAGES[last] == "cells":
        last = STAGES.index("exports")
    missing = [path.relative_to(outputs.folder).as_posix() for stage in STAGES[: last + 1] for path in required[stage] if not path.exists()]
    if missing:
        raise IncompleteResultSet(
            f"{label}: this run's result set lacks {', '.join(missing)}; the previous results stay published "
            f"(run process_slide to make a whole set)"
        )
    return STAGES[last]


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


def switch_published(root: Path, key: SlideKey, set_name: str) -> None:
    """Point <user>/outputs/<branch>/<name> at the set `set_name` with one rename (slides and stacks alike)."""
    published = slide_output_dir(root, key)
    link = published.with_name(f".{published.name}.tmp-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.join(RESULT_SETS_FOLDER, key.stem, set_name), link)
    if published.is_dir() and not published.is_symlink():
        # A folder written before result sets existed: moved in among the sets once (and swept
        # as stale right after), since a link cannot replace a folder in one rename. Readers
        # find no folder for that instant, never a mixed one.
        os.rename(published, result_sets_dir(root, key) / f"legacy-{uuid.uuid4().hex[:8]}")
    os.replace(link, published)
