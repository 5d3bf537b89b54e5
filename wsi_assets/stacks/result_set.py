"""A stack's outputs as one result set, like a slide's: each run stages its own folder, then publishes it in one step.

    <user>/outputs/<branch>/<stack>                  link to .sets/<stack>/<run id>: what readers open
    <user>/outputs/<branch>/.sets/<stack>/<run id>/  one process_stack run's files

Staging, publishing and sweeping are those of every result set (wsi_assets.results.staged_sets).
process_stack rewrites every file of a stack, so a run's set starts empty (a re-execution's starts
as its parent run's files). Publishing checks that the set is whole and that the upload did not
change during the run, then switches the link; a failed run publishes nothing and the previous
set stays. Slices on demand are written into the published set (new files only, atomically), and
belong to that version of the stack.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.keys import SlideKey
from wsi_assets.results.slide_identity import SlideIdentity, ensure_unchanged
from wsi_assets.results.staged_sets import (
    incomplete_set_message,
    published_set_dir,
    set_to_publish,
    stage_set,
    switch_to_set,
)
from wsi_assets.stacks.errors import StackReadError


@dataclass(frozen=True)
class StackOutputs:
    """The files of one stack result set."""

    folder: Path

    @property
    def metadata(self) -> Path:
        return self.folder / "stack_metadata.json"

    @property
    def source(self) -> Path:
        return self.folder / "stack_file.json"

    @property
    def zarr(self) -> Path:
        return self.folder / "stack.ome.zarr"

    @property
    def stats_json(self) -> Path:
        return self.folder / "channel_stats.json"

    @property
    def stats_csv(self) -> Path:
        return self.folder / "channel_stats.csv"

    @property
    def pca_json(self) -> Path:
        return self.folder / "channel_pca.json"

    @property
    def pca_images(self) -> Path:
        return self.folder / "pca"

    @property
    def previews(self) -> Path:
        return self.folder / "previews"

    @property
    def slices(self) -> Path:
        return self.folder / "slices"

    @property
    def nuclei_table(self) -> Path:
        return self.folder / "nuclei.parquet"

    @property
    def nuclei_json(self) -> Path:
        return self.folder / "nuclei.json"

    @property
    def nuclei_preview(self) -> Path:
        return self.folder / "nuclei_outlines.png"

    def required(self) -> list[Path]:
        return [self.metadata, self.source, self.zarr, self.stats_json, self.pca_json, self.previews, self.nuclei_table]

    def save_identity(self, identity: SlideIdentity) -> None:
        write_text_atomic(self.source, json.dumps(asdict(identity), indent=2))

    def load_identity(self) -> SlideIdentity:
        return SlideIdentity(**json.loads(self.source.read_text()))


def stage_stack_set(root: Path, key: SlideKey, run_id: str, parent_run_id: str | None = None) -> StackOutputs:
    """The run's own set folder, made on first use: empty, or for a re-execution its parent run's files
    (hard links: writers only replace files, never change one); the stack's stale sets are swept."""
    return StackOutputs(stage_set(root, key, run_id, base_run_id=parent_run_id))


def published_stack_dir(root: Path, key: SlideKey) -> StackOutputs | None:
    """The published set's real folder, or None when the stack has none yet."""
    published = published_set_dir(root, key)
    return StackOutputs(published) if published is not None else None


def require_published(root: Path, key: SlideKey) -> StackOutputs:
    found = published_stack_dir(root, key)
    if found is None or not found.zarr.is_dir():
        raise StackReadError(f"{key} has no published OME-Zarr copy yet: run process_stack for it first")
    return found


def publish_stack_set(root: Path, key: SlideKey, run_id: str, stack_file: Path) -> tuple[Path, int]:
    """Switch the stack's published folder to the run's set once it is whole; (published path, files)."""
    folder = set_to_publish(root, key, run_id)
    if folder is None:
        raise StackReadError(f"{key}: this run staged no results; nothing was published")
    outputs = StackOutputs(folder)
    missing = [p.name for p in outputs.required() if not p.exists()]
    if missing:
        raise StackReadError(incomplete_set_message(str(key), missing))
    ensure_unchanged(outputs.load_identity(), stack_file, root)
    published = switch_to_set(root, key, folder)
    return published.folder, published.files
