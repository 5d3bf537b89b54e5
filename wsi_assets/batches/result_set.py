"""A batch's outputs as one result set, published like a slide's (results/result_sets.py).

    <user>/outputs/<branch>/<batch>                  link to .sets/<batch>/<run id>: what readers open
    <user>/outputs/<branch>/.sets/<batch>/<run id>/  one run's set: manifest, cells, exports, thumbnails

Each run builds a whole new set (cells of unchanged images are copied into it from the previous
set); publishing is one rename of the link, so readers see the previous whole set or the new one.
A failed run publishes nothing, and its set is swept by the batch's next run.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.batches.manifest import MANIFEST_FILE, BatchManifest, load_manifest
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import result_sets_dir, slide_output_dir
from wsi_assets.results.output_paths import confine_slide_outputs
from wsi_assets.results.result_sets import _checked_set_name, switch_published
from wsi_assets.results.sweep import sweep_stale_sets


def published_batch_dir(root: Path, key: SlideKey) -> Path | None:
    confine_slide_outputs(root, key)
    published = slide_output_dir(root, key)
    return published.resolve() if published.is_dir() else None


def previous_manifest(root: Path, key: SlideKey) -> BatchManifest | None:
    published = published_batch_dir(root, key)
    return load_manifest(published / MANIFEST_FILE) if published else None


def run_batch_set(root: Path, key: SlideKey, run_id: str) -> Path:
    """The run's own set folder (made on first use), once every folder up to it stays in the user's folder."""
    confine_slide_outputs(root, key)
    folder = result_sets_dir(root, key) / _checked_set_name(run_id)
    if not folder.is_dir():
        folder.mkdir(parents=True)
        published = published_batch_dir(root, key)
        keep = {folder.name} | ({published.name} if published else set())
        sweep_stale_sets(result_sets_dir(root, key), keep=keep)
    return folder


def publish_batch_set(root: Path, key: SlideKey, run_id: str, required: tuple[str, ...]) -> Path:
    folder = run_batch_set(root, key, run_id)
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{key}: this run's result set lacks {', '.join(missing)}; the previous results stay published")
    switch_published(root, key, folder.name)
    sweep_stale_sets(result_sets_dir(root, key), keep={folder.name})
    return slide_output_dir(root, key)
