"""A stack's outputs as one result set, like a slide's: each run stages its own folder, then publishes it in one step.

    <user>/outputs/<branch>/<stack>                  link to .sets/<stack>/<run id>: what readers open
    <user>/outputs/<branch>/.sets/<stack>/<run id>/  one process_stack run's files

process_stack rewrites every file of a stack, so a run's set starts empty. Publishing checks that
the set is whole and that the upload did not change during the run, then switches the link;
a failed run publishes nothing and the previous set stays. Slices on demand are written into the
published set (new files only, atomically), and belong to that version of the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.confinement import confined
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import (
    branch_outputs_dir,
    result_sets_dir,
    slide_output_dir,
)
from wsi_assets.results.output_paths import (
    confine_slide_outputs,
    refuse_links_leading_out,
)
from wsi_assets.results.result_sets import switch_published
from wsi_assets.results.slide_identity import SlideIdentity, ensure_unchanged
from wsi_assets.results.sweep import (
    sweep_stale_sets,
    sweep_switch_temporaries,
    sweep_temporaries,
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
    home = confine_slide_outputs(root, key)
    sets = result_sets_dir(root, key)
    folder = sets / run_id
    if not folder.is_dir():
        temporary = sets / f".{run_id}.tmp-{uuid.uuid4().hex[:8]}"
        parent = sets / parent_run_id if parent_run_id else None
        if parent is not None and parent.is_dir() and not parent.is_symlink():
            refuse_links_leading_out(parent, root, key.user, home)
            shutil.copytree(parent, temporary, symlinks=True, copy_function=os.link)
        else:
            temporary.mkdir(parents=True)
        os.rename(temporary, folder)
        published = published_stack_dir(root, key)
        sweep_stale_sets(sets, keep={folder.name} | ({published.folder.name} if published else set()))
    refuse_links_leading_out(folder, root, key.user, home)
    return StackOutputs(folder)


def published_stack_dir(root: Path, key: SlideKey) -> StackOutputs | None:
    """The published set's real folder, or None when the stack has none yet."""
    confine_slide_outputs(root, key)
    published = slide_output_dir(root, key)
    if not published.is_dir():
        return None
    return StackOutputs(confined(published, root, key.user))


def require_published(root: Path, key: SlideKey) -> StackOutputs:
    found = published_stack_dir(root, key)
    if found is None or not found.zarr.is_dir():
        raise StackReadError(f"{key} has no published OME-Zarr copy yet: run process_stack for it first")
    return found


def publish_stack_set(root: Path, key: SlideKey, run_id: str, stack_file: Path) -> tuple[Path, int]:
    """Switch the stack's published folder to the run's set once it is whole; (published path, files)."""
    home = confine_slide_outputs(root, key)
    sets = result_sets_dir(root, key)
    outputs = StackOutputs(sets / run_id)
    if not outputs.folder.is_dir():
        raise StackReadError(f"{key}: this run staged no results; nothing was published")
    refuse_links_leading_out(outputs.folder, root, key.user, home)
    sweep_temporaries(outputs.folder)
    missing = [p.name for p in outputs.required() if not p.exists()]
    if missing:
        raise StackReadError(f"{key}: this run's result set lacks {', '.join(missing)}; the previous results stay published")
    ensure_unchanged(outputs.load_identity(), stack_file, root)
    switch_published(root, key, outputs.folder.name)
    sweep_stale_sets(sets, keep={outputs.folder.name})
    sweep_switch_temporaries(branch_outputs_dir(root, key.user, key.branch), key.stem)
    files = sum(len(names) for _, _, names in os.walk(outputs.folder))
    return slide_output_dir(root, key), files
