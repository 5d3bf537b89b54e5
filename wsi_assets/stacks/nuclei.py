"""Nuclei of a stack: its nuclear channel segmented per (t, z) plane, linked in 3-D and over time.

Writes, into a stack's result set:
- `stack.ome.zarr/labels/nuclei/`: NGFF labels (one id per 3-D nucleus per time point);
- `nuclei.parquet`: one row per nucleus per time point (t, label, track_id, centroid_x/y/z in
  level-0 voxels, z_first, z_last, voxels, volume_um3 or area_um2 when Z = 1, mean_<channel>
  and sum_<channel> for every channel).

Per time point: each block of Z planes (the copy's chunk depth) is segmented, then its planes are
linked to the one below (`nuclei_3d`), then the time point is measured (`nuclei_measure`); the
tracks are linked from the table at the end (`tracking`). Every step reads a block or a tile at
a time: memory is bounded by the budgets, not by the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from wsi_assets.core.atomic import atomic_output
from wsi_assets.stacks.axes import StackInfo
from wsi_assets.stacks.blocks import tile_within, yx_regions
from wsi_assets.stacks.nuclei_3d import (
    OVERLAP_THRESHOLD,
    count_overlaps,
    relabel,
    stitch_pairs,
    z_step_too_long,
)
from wsi_assets.stacks.nuclei_measure import channel_columns, measure_time_point
from wsi_assets.stacks.nuclei_planes import PlaneSegmenter, margin_px, segment_block
from wsi_assets.stacks.ome_zarr import open_level
from wsi_assets.stacks.ome_zarr_labels import label_image
from wsi_assets.stacks.tracking import add_track_ids

LINK_BUDGET_BYTES = 64 * 2**20
LABELS_NAME = "nuclei"


@dataclass(frozen=True)
class NucleiSettings:
    stitch_score: str = "overlap"  # or "iou" (Cellpose's; see nuclei_3d)
    stitch_threshold: float = OVERLAP_THRESHOLD
    track_max_distance_um: float | None = None  # None: the median nucleus diameter


@dataclass
class NucleiSummary:
    nuclei_rows: int
    nuclei_per_t: list[int]
    planes: int
    z_linked: bool
    z_link_skipped: int  # plane pairs not linked because the Z step is longer than a nucleus
    tracks: dict = field(default_factory=dict)
    channels: list[dict] = field(default_factory=list)  # per channel: mean and median of the nuclei's means, sum over nuclei


def _link_plane(labels: zarr.Array, t: int, z: int, info: StackInfo, settings: NucleiSettings) -> bool:
    """Link plane z of time t to plane z-1 in place; False when the Z step is too long to link them."""
    height, width = labels.shape[2:]
    tile = tile_within(LINK_BUDGET_BYTES, 3 * 8, height, width)
    regions = list(yx_regions(height, width, tile))
    overlaps = count_overlaps((np.asarray(labels[t, z - 1, ys, xs]), np.asarray(labels[t, z, ys, xs])) for ys, xs in regions)
    size = info.physical_size_um
    if z_step_too_long(overlaps, size.get("z"), size.get("x")):
        return False
    mapping = stitch_pairs(overlaps, settings.stitch_threshold, settings.stitch_score)
    if mapping:
        for ys, xs in regions:
            labels[t, z, ys, xs] = relabel(np.asarray(labels[t, z, ys, xs]), mapping)
    return True


def segment_stack_nuclei(
    zarr_folder: Path,
    info: StackInfo,
    channel: int,
    segment: PlaneSegmenter,
    table_path: Path,
    settings: NucleiSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> NucleiSummary:
    """Segment, link, measure and track the nuclei of the stack whose OME-Zarr copy is `zarr_folder`."""
    settings = settings or NucleiSettings()
    image = open_level(Path(zarr_folder), 0)
    t_size, _, z_size = image.shape[:3]
    z_block = image.chunks[2]
    margin = margin_px(info.physical_size_um.get("x"))
    tables, skipped = [], 0
    next_id = 1
    with label_image(Path(zarr_folder), info, LABELS_NAME) as labels_image:
        labels = labels_image.levels[0]
        for t in range(t_size):
            first_id = next_id
            for z0 in range(0, z_size, z_block):
                zs = slice(z0, min(z_size, z0 + z_block))
                next_id = segment_block(image, labels, t, channel, zs, segment, next_id, margin)
                for z in range(max(zs.start, 1), zs.stop):
                    if not _link_plane(labels, t, z, info, settings):
                        skipped += 1
            labels_image.build_pyramid(t)
            tables.append(
                measure_time_point(image, labels, t, (first_id, next_id), info.channel_names, info.physical_size_um, z_block)
            )
            if progress:
                progress(f"t={t}: {len(tables[-1])} nuclei in {z_size} planes")
        table = pd.concat(tables, ignore_index=True)
        table, tracks = add_track_ids(table, info.physical_size_um, settings.track_max_distance_um)
        labels_image.finish(sorted(table["label"].unique().tolist()))
    columns = ["t", "label", "track_id", *[c for c in table.columns if c not in ("t", "label", "track_id")]]
    table = table[columns]
    with atomic_output(Path(table_path)) as temporary:
        table.to_parquet(temporary, index=False)
    channels = [
        {
            "channel": name,
            "column": column,
            "mean_of_means": round(float(table[f"mean_{column}"].mean()), 3) if len(table) else None,
            "median_of_means": round(float(table[f"mean_{column}"].median()), 3) if len(table) else None,
            "sum_over_nuclei": float(table[f"sum_{column}"].sum()),
        }
        for name, column in zip(info.channel_names, channel_columns(info.channel_names))
    ]
    return NucleiSummary(
        nuclei_rows=len(table),
        nuclei_per_t=[int(n) for n in table.groupby("t").size().reindex(range(t_size), fill_value=0)],
        planes=t_size * z_size,
        z_linked=z_size > 1 and skipped < t_size * (z_size - 1),
        z_link_skipped=skipped,
        tracks=tracks if t_size > 1 else {},
        channels=channels,
    )
