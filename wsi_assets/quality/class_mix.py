"""Whether a slide's class mix is one real H&E tissue can have, and the class-coloured overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from wsi_assets.cells.classes import CLASS_COLUMN, class_colour
from wsi_assets.core.images import small_jpeg
from wsi_assets.quality.checks import CheckOutcome
from wsi_assets.quality.overlays import OVERLAY_REGION_UM, overlay_regions
from wsi_assets.slides.reader import SlideInfo, open_slide, read_region_at_downsample

# Too few cells say nothing about a mix.
MIN_CELLS = 50
# `other` is CoNSeP's rarest class (3% of its nuclei); most of a slide being `other` means the
# measurements are off (stain, focus, µm/px), not that the tissue is unusual.
MAX_OTHER_FRACTION = 0.5
MAX_SINGLE_CLASS_FRACTION = 0.98
# With the rule alone, nearly every nucleus passing it means the thresholds admit everything.
MAX_RULE_INFLAMMATORY_FRACTION = 0.9


def class_mix(figures: dict, method: str) -> CheckOutcome:
    """Passes unless one class swallows the slide, or (with the classifier) most nuclei are `other`."""
    fractions, total = figures["class_fractions"], figures["cells"]
    metadata = {"cells": total, **{f"fraction_{name}": value for name, value in fractions.items()}, "method": method}
    if total < MIN_CELLS:
        return CheckOutcome(True, f"only {total} cells: too few to judge the class mix", metadata)
    if method == "rule":
        share = fractions["inflammatory"]
        if share > MAX_RULE_INFLAMMATORY_FRACTION:
            return CheckOutcome(
                False, f"the lymphocyte rule calls {share:.0%} of nuclei inflammatory: tighten its thresholds", metadata
            )
        return CheckOutcome(True, f"the lymphocyte rule calls {share:.0%} of nuclei inflammatory", metadata)
    if fractions["other"] > MAX_OTHER_FRACTION:
        return CheckOutcome(False, f"{fractions['other']:.0%} of nuclei are 'other': check the stain and the µm/px", metadata)
    top = max(fractions, key=fractions.get)
    if fractions[top] >= MAX_SINGLE_CLASS_FRACTION:
        return CheckOutcome(False, f"{fractions[top]:.0%} of nuclei are '{top}': a real section mixes cell types", metadata)
    return CheckOutcome(
        True, "class mix plausible: " + ", ".join(f"{name} {value:.0%}" for name, value in fractions.items()), metadata
    )


def _draw_classes(rgb: np.ndarray, table, x0: int, y0: int, panel_px: int = 320) -> np.ndarray:
    import cv2

    scale = panel_px / max(rgb.shape[:2])
    out = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    xs, ys, classes = (
        table.column("polygon_x").to_pylist(),
        table.column("polygon_y").to_pylist(),
        table.column(CLASS_COLUMN).to_pylist(),
    )
    for px, py, name in zip(xs, ys, classes):
        ring = np.round((np.stack([px, py], axis=1) - [x0, y0]) * scale * 4).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [ring], True, class_colour(name or "other"), 1, cv2.LINE_AA, shift=2)
    return out


def class_overlay(slide_path: Path, cells_path: Path, info: SlideInfo) -> bytes:
    """JPEG of the QC regions with each nucleus outlined in its class's colour."""
    region_px = int(round(OVERLAY_REGION_UM / info.mpp))
    panels = []
    with open_slide(slide_path) as slide:
        for x0, y0 in overlay_regions(cells_path, info.width, info.height, region_px):
            rgb = read_region_at_downsample(slide, x0, y0, region_px, region_px, 1.0)
            box = [
                ("centroid_x", ">=", x0 - region_px),
                ("centroid_x", "<", x0 + 2 * region_px),
                ("centroid_y", ">=", y0 - region_px),
                ("centroid_y", "<", y0 + 2 * region_px),
            ]
            table = pq.read_table(str(cells_path), columns=["polygon_x", "polygon_y", CLASS_COLUMN], filters=box)
            panels.append(_draw_classes(rgb, table, x0, y0))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    return small_jpeg(strip, max(strip.shape[:2]))
