"""A preview of the nuclei found: their outlines over the nuclear channel's maximum-intensity projection at t = 0.

Drawn at the pyramid level whose larger side is at most 1024 px, from the image's and the
labels' levels of the same index (they have the same shapes). An outline is a labelled pixel
with a differently labelled 4-neighbour in any Z plane, so every nucleus of every plane shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.stacks.ome_zarr import open_level, smallest_level_within
from wsi_assets.stacks.ome_zarr_labels import open_label_level
from wsi_assets.stacks.previews import stretch

PREVIEW_MAX_SIDE = 1024
OUTLINE_RGB = (255, 220, 0)


def outlines(labels: np.ndarray) -> np.ndarray:
    """bool (Y, X): pixels of a 2-D label image on the edge of their label."""
    edge = np.zeros(labels.shape, bool)
    differs_y = labels[1:] != labels[:-1]
    differs_x = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= differs_y
    edge[:-1] |= differs_y
    edge[:, 1:] |= differs_x
    edge[:, :-1] |= differs_x
    return edge & (labels > 0)


def nuclei_outline_preview(zarr_folder: Path, channel: int, t: int = 0, labels_name: str = "nuclei") -> np.ndarray:
    """uint8 (Y, X, 3): the nuclear channel's MIP at time t, stretched, with the nuclei's outlines in yellow."""
    level = smallest_level_within(Path(zarr_folder), PREVIEW_MAX_SIDE)
    image = open_level(Path(zarr_folder), level)
    labels = open_label_level(Path(zarr_folder), labels_name, level)
    mip = None
    edge = np.zeros(image.shape[3:], bool)
    for z in range(image.shape[2]):
        plane = np.asarray(image[t, channel, z])
        mip = plane if mip is None else np.maximum(mip, plane)
        edge |= outlines(np.asarray(labels[t, z]))
    rgb = np.repeat(stretch(mip)[..., None], 3, axis=2)
    rgb[edge] = OUTLINE_RGB
    return rgb
