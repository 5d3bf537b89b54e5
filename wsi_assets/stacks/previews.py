"""Small previews of a stack for the UI: per channel its middle Z plane and its maximum-intensity projection, and a colour composite.

Drawn from the pyramid level whose larger side is at most 512 px, at t = 0, each channel
stretched between its 0.5th and 99.5th percentiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.stacks.ome_zarr import (
    CHANNEL_COLOURS,
    open_level,
    smallest_level_within,
)

PREVIEW_MAX_SIDE = 512


def stretch(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (0.5, 99.5))
    scaled = (image.astype(np.float32) - low) / (high - low) if high > low else np.zeros(image.shape, np.float32)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)], np.float32) / 255


def stack_previews(zarr_folder: Path, channel_names: tuple[str, ...], t: int = 0) -> dict[str, np.ndarray]:
    """{"<channel> mid-Z": gray, "<channel> MIP": gray, ..., "composite MIP": RGB}, all uint8."""
    level = open_level(zarr_folder, smallest_level_within(zarr_folder, PREVIEW_MAX_SIDE))
    _, c_size, z_size, height, width = level.shape
    previews, composite = {}, np.zeros((height, width, 3), np.float32)
    for c in range(c_size):
        middle = np.asarray(level[t, c, z_size // 2])
        projection = np.asarray(level[t, c, 0])
        for z in range(1, z_size):  # plane by plane: never the whole channel volume
            projection = np.maximum(projection, np.asarray(level[t, c, z]))
        name = channel_names[c]
        previews[f"{name} mid-Z"] = stretch(middle)
        previews[f"{name} MIP"] = stretched = stretch(projection)
        composite += stretched[..., None].astype(np.float32) * _rgb(CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)])
    previews["composite MIP"] = np.clip(composite, 0, 255).astype(np.uint8)
    return previews


def preview_file_name(title: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in title) + ".png"


def side_by_side(images: np.ndarray) -> np.ndarray:
    """(n, Y, X) images, each stretched, in one RGB row: how PCA component images are shown in the UI."""
    row = np.concatenate([stretch(image) for image in images], axis=1)
    return np.repeat(row[..., None], 3, axis=2)
