"""The disagreement overlay: the reviewed area of the slide with added, deleted, reclassified and reshaped cells drawn."""

from __future__ import annotations

import cv2
import numpy as np

from wsi_assets.slides.reader import read_region_at_downsample

# RGB, chosen to stay apart from the class colours and from H&E.
KIND_COLOURS = {
    "agreed": (200, 200, 200),
    "added": (0, 220, 0),  # the reviewer drew a cell the model missed
    "deleted": (255, 0, 255),  # the reviewer removed a model cell
    "reclassified": (255, 220, 0),
    "reshaped": (0, 220, 255),
}
OVERLAY_MAX_SIDE = 1024


def _draw(rgb, polygons, x0, y0, scale, colour, thickness):
    rings = [np.round((np.asarray(p.exterior.coords) - (x0, y0)) / scale).astype(np.int32) for p in polygons]
    if rings:
        cv2.polylines(rgb, rings, True, colour, thickness, cv2.LINE_AA)


def disagreement_overlay(slide, result, width: int, height: int) -> np.ndarray:
    """RGB of the reviewed area (the whole slide without regions), at most OVERLAY_MAX_SIDE px, disagreements drawn."""
    if result.area is not None:
        bx0, by0, bx1, by1 = result.area.bounds
    else:
        bx0, by0, bx1, by1 = 0, 0, width, height
    x0, y0 = max(int(bx0), 0), max(int(by0), 0)
    x1, y1 = min(int(np.ceil(bx1)), width), min(int(np.ceil(by1)), height)
    scale = max((x1 - x0) / OVERLAY_MAX_SIDE, (y1 - y0) / OVERLAY_MAX_SIDE, 1.0)
    rgb = np.ascontiguousarray(read_region_at_downsample(slide, x0, y0, x1 - x0, y1 - y0, scale))
    pairs, model = result.pairs, result.model
    kinds = {}
    for row in result.disagreements:
        kinds.setdefault(row["kind"], []).append(row)
    reshaped = {int(m) for m, iou in zip(pairs.model, pairs.iou) if iou < 0.5}
    reclassified = {int(r["model_cell_id"]) for r in kinds.get("reclassified", [])}
    agreed = [model.polygons[m] for m in pairs.model if int(model.cell_ids[m]) not in reshaped | reclassified]
    _draw(rgb, agreed, x0, y0, scale, KIND_COLOURS["agreed"], 1)
    _draw(rgb, [model.polygons[m] for m in pairs.model_only], x0, y0, scale, KIND_COLOURS["deleted"], 2)
    _draw(rgb, [result.reviewer_polygons[r] for r in pairs.reviewer_only], x0, y0, scale, KIND_COLOURS["added"], 2)
    _draw(
        rgb,
        [model.polygons[m] for m in pairs.model if int(model.cell_ids[m]) in reshaped],
        x0,
        y0,
        scale,
        KIND_COLOURS["reshaped"],
        2,
    )
    _draw(
        rgb,
        [model.polygons[m] for m in pairs.model if int(model.cell_ids[m]) in reclassified],
        x0,
        y0,
        scale,
        KIND_COLOURS["reclassified"],
        2,
    )
    if result.area is not None:
        for region in getattr(result.area, "geoms", [result.area]):
            _draw(rgb, [region], x0, y0, scale, (0, 0, 0), 2)
    return rgb
