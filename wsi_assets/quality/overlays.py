"""Pictures for reviewing a slide's results: the tissue mask over the thumbnail, nucleus outlines on full-resolution regions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wsi_assets.cells.store import read_cell_columns, read_cells_where
from wsi_assets.core.images import small_jpeg
from wsi_assets.slides.reader import SlideInfo, open_slide, read_region_at_downsample

OVERLAY_REGION_UM = 128.0  # side of each full-resolution QC region


def tissue_overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The thumbnail with tissue tinted green and its outline drawn."""
    mask_full = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    overlay = rgb.copy()
    tint = np.array([40, 200, 80], np.float32)
    overlay[mask_full > 0] = (0.6 * overlay[mask_full > 0] + 0.4 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(mask_full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(overlay, contours, -1, (0, 120, 0), max(1, rgb.shape[1] // 400))
    return overlay


def overlay_regions(cells_path: Path, width: int, height: int, region_px: int, count: int = 3) -> list[tuple[int, int]]:
    """Top-left corners of `count` level-0 regions centred on nuclei spread over the slide."""
    cols = read_cell_columns(cells_path, ["centroid_x", "centroid_y"])
    n = len(cols["centroid_x"])
    if n == 0:
        return [(max(0, (width - region_px) // 2), max(0, (height - region_px) // 2))]
    order = np.argsort(cols["centroid_x"] + cols["centroid_y"] * width, kind="stable")
    picks = order[np.linspace(0, n - 1, count + 2)[1:-1].astype(int)]
    corners = []
    for i in picks:
        x = int(np.clip(cols["centroid_x"][i] - region_px / 2, 0, max(0, width - region_px)))
        y = int(np.clip(cols["centroid_y"][i] - region_px / 2, 0, max(0, height - region_px)))
        corners.append((x, y))
    return corners


def region_polygons(cells_path: Path, x0: int, y0: int, x1: int, y1: int) -> list[np.ndarray]:
    """Outlines of nuclei whose centroid lies in the level-0 box (row-group statistics skip the rest)."""
    box = [("centroid_x", ">=", x0), ("centroid_x", "<", x1), ("centroid_y", ">=", y0), ("centroid_y", "<", y1)]
    polygons = []
    for _, nuclei, _ in read_cells_where(cells_path, box):
        polygons.extend(nuclei.polygon(i) for i in range(len(nuclei)))
    return polygons


def draw_outlines(rgb: np.ndarray, polygons: list[np.ndarray], x0: int, y0: int, panel_px: int = 320) -> np.ndarray:
    """The region shrunk to `panel_px`, with outlines drawn at that size so they stay crisp."""
    scale = panel_px / max(rgb.shape[:2])
    out = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    shifted = [np.round((p - [x0, y0]) * scale * 4).astype(np.int32).reshape(-1, 1, 2) for p in polygons]
    cv2.polylines(out, shifted, True, (255, 255, 0), 1, cv2.LINE_AA, shift=2)
    return out


def qc_overlay(slide_path: Path, cells_path: Path, info: SlideInfo) -> bytes:
    """JPEG of nucleus outlines drawn on a few full-resolution regions, side by side."""
    region_px = int(round(OVERLAY_REGION_UM / info.mpp))
    panels = []
    with open_slide(slide_path) as slide:
        for x0, y0 in overlay_regions(cells_path, info.width, info.height, region_px):
            rgb = read_region_at_downsample(slide, x0, y0, region_px, region_px, 1.0)
            polygons = region_polygons(cells_path, x0 - region_px, y0 - region_px, x0 + 2 * region_px, y0 + 2 * region_px)
            panels.append(draw_outlines(rgb, polygons, x0, y0))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    return small_jpeg(strip, max(strip.shape[:2]))
