"""A slide's outputs as one result set (wsi_assets.results.staged_sets): each run stages its own, then publishes it in one step.

Layout, per slide:

    <user>/outputs/<branch>/<slide>                  link to .sets/<slide>/<set>: what readers open
    <user>/outputs/<branch>/.sets/<slide>/<run id>/  one run's set: metadata, tissue, cells, exports

What is a slide's own: a run's set starts from the published one (hard links), so a partial job
(`export_cells`, `tissue_mask_only`) still holds its upstream files. When a stage is rewritten,
the stages after it are dropped from the run's set: cells found on an earlier tissue mask, or
exports of earlier cells, would no longer belong to it. A set is whole once it holds every file
of its last stage and of the stages before it, and the slide file did not change during the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.keys import SlideKey
from wsi_assets.core.slide_outputs import STAGES, MissingUpstreamOutput, SlideOutputs
from wsi_assets.core.user_files import result_sets_dir
from wsi_assets.results.output_paths import confine_slide_outputs
from wsi_assets.results.slide_identity import ensure_unchanged, load_identity
from wsi_assets.results.staged_sets import (
    checked_set_name,
    incomplete_set_message,
    set_to_publish,
    stage_set,
    switch_to_set,
)
from wsi_assets.results.sweep import remove_entry


class IncompleteResultSet(MissingUpstreamOutput):
    """A run's result set lacks a file of a stage it holds, so it cannot be published."""


@dataclass(frozen=True)
class PublishedSet:
    folder: Path
    stage: str
    files: int
    swept: tuple[str, ...]


def stage_run_set(root: Path, key: SlideKey, run_id: str, stage: str, base_run_id: str | None = None) -> SlideOutputs:
    """The run's own set, ready for `stage` to write into: made on first use, later stages dropped.

    The set starts as the published set (or, for a re-execution, its parent run's set) by hard
    links. Making it sweeps the slide's stale sets; the published set is never swept.
    """
    folder = stage_set(root, key, run_id, base_run_id, from_published=True)
    outputs = SlideOutputs(folder)
    later = STAGES[STAGES.index(stage) + 1 :]
    for entry in list(folder.iterdir()):
        if outputs.stage_of(entry.name) in later:
            remove_entry(entry)
    return outputs


def read_run_set(root: Path, key: SlideKey, run_id: str) -> SlideOutputs:
    """What a run's checks read: the run's staged set when it has one, else the published set."""
    confine_slide_outputs(root, key)
    folder = result_sets_dir(root, key) / checked_set_name(run_id)
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
    folder = set_to_publish(root, key, run_id)
    if folder is None:
        return None
    outputs = SlideOutputs(folder)
    stage = whole_stage(outputs, export_files, key.partition_key)
    if slide_file is not None:
        ensure_unchanged(load_identity(outputs), slide_file, root)
    if before_switch is not None:
        before_switch(outputs, stage)
    published = switch_to_set(root, key, folder)
    return PublishedSet(published.folder, stage, published.files, published.swept)


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
    missing = [
        path.relative_to(outputs.folder).as_posix()
        for stage in STAGES[: last + 1]
        for path in required[stage]
        if not path.exists()
    ]
    if missing:
        raise IncompleteResultSet(incomplete_set_message(label, missing, " (run process_slide to make a whole set)"))
    return STAGES[last]
