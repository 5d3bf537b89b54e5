"""Small previews of a stack for the UI: per channel its middle Z plane and its maximum-intensity projection, and a colour composite.

Drawn from the pyramid level whose larger side is at most 512 px, at t = 0, each channel shown
through the display window and in the colour the copy's `omero` metadata gives viewers, so the
previews look as the stack first looks in napari or Fiji. A copy without windows (written before
they were measured) has each image stretched between its own 0.5th and 99.5th percentiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.stacks.channel_colours import channel_colours
from wsi_assets.stacks.ome_zarr import (
    omero_channels,
    open_level,
    smallest_level_within,
)

PREVIEW_MAX_SIDE = 512


def stretch(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (0.5, 99.5))
    scaled = (image.astype(np.float32) - low) / (high - low) if high > low else np.zeros(image.shape, np.float32)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def windowed(image: np.ndarray, start: float, end: float) -> np.ndarray:
    """uint8 grey levels: `start` and below black, `end` and above white, linear between."""
    scaled = (image.astype(np.float32) - start) / max(end - start, np.finfo(np.float32).tiny)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _shown(image: np.ndarray, window: dict | None) -> np.ndarray:
    return windowed(image, window["start"], window["end"]) if window else stretch(image)


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)], np.float32) / 255


def stack_previews(zarr_folder: Path, channel_names: tuple[str, ...], t: int = 0) -> dict[str, np.ndarray]:
    """{"<channel> mid-Z": gray, "<channel> MIP": gray, ..., "composite MIP": RGB}, all uint8."""
    level = open_level(zarr_folder, smallest_level_within(zarr_folder, PREVIEW_MAX_SIDE))
    _, c_size, z_size, height, width = level.shape
    previews, composite = {}, np.zeros((height, width, 3), np.float32)
    settings = omero_channels(zarr_folder)
    if len(settings) != c_size:
        settings = [{"color": colour} for colour in channel_colours(channel_names[:c_size])]
    for c in range(c_size):
        middle = np.asarray(level[t, c, z_size // 2])
        projection = np.asarray(level[t, c, 0])
        for z in range(1, z_size):  # plane by plane: never the whole channel volume
            projection = np.maximum(projection, np.asarray(level[t, c, z]))
        name = channel_names[c]
        window = settings[c].get("window")
        previews[f"{name} mid-Z"] = _shown(middle, window)
        previews[f"{name} MIP"] = stretched = _shown(projection, window)
        composite += stretched[..., None].astype(np.float32) * _rgb(settings[c].get("color") or "FFFFFF")
    previews["composite MIP"] = np.clip(composite, 0, 255).astype(np.uint8)
    return previews


def preview_file_name(title: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in title) + ".png"


def side_by_side(images: np.ndarray) -> np.ndarray:
    """(n, Y, X) images, each stretched, in one RGB row: how PCA component images are shown in the UI."""
    row = np.concatenate([stretch(image) for image in images], axis=1)
    return np.repeat(row[..., None], 3, axis=2)
