"""A batch's outputs as one result set, staged and published like a slide's (wsi_assets.results.staged_sets).

    <user>/outputs/<branch>/<batch>                  link to .sets/<batch>/<run id>: what readers open
    <user>/outputs/<branch>/.sets/<batch>/<run id>/  one run's set: manifest, cells, exports, thumbnails

Each run builds a whole new set, starting empty (cells of unchanged images are copied into it from
the previous set); publishing is one rename of the link, so readers see the previous whole set or
the new one. A failed run publishes nothing, and its set is swept by the batch's next run.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.batches.manifest import MANIFEST_FILE, BatchManifest, load_manifest
from wsi_assets.core.keys import SlideKey
from wsi_assets.results.staged_sets import (
    incomplete_set_message,
    published_set_dir,
    set_to_publish,
    switch_to_set,
)


def previous_manifest(root: Path, key: SlideKey) -> BatchManifest | None:
    published = published_set_dir(root, key)
    return load_manifest(published / MANIFEST_FILE) if published else None


def publish_batch_set(root: Path, key: SlideKey, run_id: str, required: tuple[str, ...]) -> Path:
    """Switch the batch's published folder to the run's set once it holds every `required` file; the published path."""
    folder = set_to_publish(root, key, run_id)
    missing = [name for name in required if folder is None or not (folder / name).exists()]
    if folder is None or missing:
        raise FileNotFoundError(incomplete_set_message(str(key), missing))
    return switch_to_set(root, key, folder).folder
