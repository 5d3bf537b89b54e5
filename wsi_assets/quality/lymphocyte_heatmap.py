"""The lymphocyte density heatmap: inflammatory nuclei per mm², coloured over the slide's thumbnail."""

from __future__ import annotations

import cv2
import numpy as np

from wsi_assets.cells.lymphocyte_density import LymphocyteDensity, smoothed_density
from wsi_assets.core.images import small_jpeg

# Densities are coloured on a fixed scale so two slides' heatmaps compare by eye: 0 to this many
# lymphocytes per mm² (dense lymphoid aggregates reach several thousand; above it saturates).
SCALE_MAX_PER_MM2 = 3000.0
ALPHA = 0.55


def heatmap_rgb(
    thumbnail_rgb: np.ndarray,
    density: LymphocyteDensity,
    slide_width: int,
    slide_height: int,
    tissue_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The thumbnail with the smoothed density blended over its tissue, and a scale bar below.

    `tissue_mask` (the slide's tissue mask at any size) draws the tissue's own outline; without it
    the density's squares with tissue are coloured.
    """
    height, width = thumbnail_rgb.shape[:2]
    grid = smoothed_density(density)
    # The grid spans whole squares from the slide's origin: crop it to the slide before resizing.
    square_px = density.grid_um / max(slide_width / max(width, 1), 1e-9)
    rows = min(grid.shape[0], int(np.ceil(height / max(square_px, 1e-9))) or 1)
    cols = min(grid.shape[1], int(np.ceil(width / max(square_px, 1e-9))) or 1)
    values = cv2.resize(grid[:rows, :cols].astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if tissue_mask is not None:
        tissue = cv2.resize(np.asarray(tissue_mask, np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    else:
        tissue = (
            cv2.resize((density.tissue_mm2[:rows, :cols] > 0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            > 0
        )
    level = np.clip(values / SCALE_MAX_PER_MM2, 0, 1)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    out = thumbnail_rgb.astype(np.float32)
    blend = tissue[..., None]
    out = np.where(blend, (1 - ALPHA) * out + ALPHA * colours.astype(np.float32), out).astype(np.uint8)
    return np.concatenate([out, _scale_bar(width)], axis=0)


def _scale_bar(width: int, height: int = 34) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    if width > 20:
        ramp = np.linspace(0, 255, width - 20).astype(np.uint8)[None, :].repeat(10, 0)
        bar[4:14, 10 : width - 10] = cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO)[..., ::-1]
    cv2.putText(bar, "0", (10, 29), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    label = f"{SCALE_MAX_PER_MM2:.0f}+ lymphocytes/mm2"
    (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.putText(bar, label, (max(24, width - 10 - text_w), 29), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def lymphocyte_heatmap(
    thumbnail_jpeg: bytes, density: LymphocyteDensity, slide_width: int, slide_height: int, tissue_mask: np.ndarray | None = None
) -> bytes:
    """JPEG of the heatmap over the thumbnail (the thumbnail.jpg of the slide's result set)."""
    thumbnail = cv2.imdecode(np.frombuffer(thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    if thumbnail is None:
        raise ValueError("the slide's thumbnail cannot be decoded: materialize 'slide_metadata' again")
    rgb = heatmap_rgb(thumbnail[..., ::-1], density, slide_width, slide_height, tissue_mask)
    return small_jpeg(rgb, max(rgb.shape[:2]))
