"""QuPath-style measurements of each nucleus of a label map: shape, size and stain optical density.

Shape comes from the traced outline (a polygon through boundary pixel centres, the one the
cell table stores), so area, perimeter, circularity and solidity all describe the same polygon,
as QuPath's do. Optical density comes from every pixel of the nucleus after colour deconvolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from wsi_assets.cells.stain_vectors import DEFAULT_STAINS, StainVectors, stain_amounts

# Stored column -> the name QuPath shows (its measurement list and GeoJSON "measurements" map).
QUPATH_NAMES: dict[str, str] = {
    "nucleus_perimeter_um": "Nucleus: Perimeter µm",
    "nucleus_circularity": "Nucleus: Circularity",
    "nucleus_solidity": "Nucleus: Solidity",
    "nucleus_eccentricity": "Nucleus: Eccentricity",
    "nucleus_max_caliper_um": "Nucleus: Max caliper µm",
    "nucleus_min_caliper_um": "Nucleus: Min caliper µm",
    "nucleus_hematoxylin_od_mean": "Nucleus: Hematoxylin OD mean",
    "nucleus_hematoxylin_od_std": "Nucleus: Hematoxylin OD std dev",
    "nucleus_hematoxylin_od_min": "Nucleus: Hematoxylin OD min",
    "nucleus_hematoxylin_od_max": "Nucleus: Hematoxylin OD max",
    "nucleus_eosin_od_mean": "Nucleus: Eosin OD mean",
}
MEASUREMENT_COLUMNS = tuple(QUPATH_NAMES)
# The traced outline steps from pixel to pixel; such a staircase is longer than the boundary it
# follows (a disk's circularity would read 0.68-0.88). Straightening it within 0.7 px first
# brings disks of 3-30 px radius to 0.94-0.97.
SHAPE_TOLERANCE_PX = 0.7


def calipers(hulls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per convex hull: the largest distance between two of its points, and its smallest width
    over its edge directions (rotating calipers), all hulls at once."""
    count = len(hulls)
    if count == 0:
        return np.zeros(0), np.zeros(0)
    sizes = np.asarray([len(h) for h in hulls])
    width = int(sizes.max())
    # Padding repeats a hull's first point: it adds no distance and only zero-length edges.
    points = np.empty((count, width, 2), np.float64)
    for i, hull in enumerate(hulls):
        flat = hull.reshape(-1, 2)
        points[i, : len(flat)] = flat
        points[i, len(flat) :] = flat[0]
    differences = points[:, :, None, :] - points[:, None, :, :]
    longest = np.sqrt((differences**2).sum(-1).max(axis=(1, 2)))
    edges = np.roll(points, -1, axis=1) - points
    # The closing edge of a padded hull runs from its last real point back to the first.
    last = sizes - 1
    edges[np.arange(count), last] = points[:, 0] - points[np.arange(count), last]
    lengths = np.hypot(edges[..., 0], edges[..., 1])
    relative = points[:, None, :, :] - points[:, :, None, :]  # [n, edge start j, point k]
    cross = np.abs(edges[:, :, None, 0] * relative[..., 1] - edges[:, :, None, 1] * relative[..., 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        widths = np.where(lengths > 0, cross.max(axis=2) / lengths, np.inf)
    narrowest = widths.min(axis=1)
    narrowest[(sizes < 3) | ~np.isfinite(narrowest)] = 0.0
    return longest, narrowest


def outline_shapes(outlines: list[np.ndarray]) -> np.ndarray:
    """(N, 5): area, perimeter, convex area, max caliper, min caliper of each closed outline, in its own pixel units."""
    rows, hulls = [], []
    for outline in outlines:
        outline = cv2.approxPolyDP(outline, SHAPE_TOLERANCE_PX, True)
        hull = cv2.convexHull(outline)
        rows.append((cv2.contourArea(outline), cv2.arcLength(outline, True), cv2.contourArea(hull)))
        hulls.append(hull)
    longest, narrowest = calipers(hulls)
    return np.column_stack([np.asarray(rows, np.float64).reshape(-1, 3), longest, narrowest])


def _eccentricity(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Of the ellipse with each nucleus's second moments (0 a circle, towards 1 a line)."""
    flat = np.flatnonzero(labels > 0)
    rows, cols = np.divmod(flat, labels.shape[1])
    which = labels.ravel()[flat].astype(np.intp)
    size = max(int(which.max()) + 1 if which.size else 1, int(ids.max()) + 1)
    count = np.maximum(np.bincount(which, minlength=size), 1).astype(np.float64)
    mean_r = np.bincount(which, rows, size) / count
    mean_c = np.bincount(which, cols, size) / count
    dr, dc = rows - mean_r[which], cols - mean_c[which]
    mrr = np.bincount(which, dr * dr, size)[ids] / count[ids]
    mcc = np.bincount(which, dc * dc, size)[ids] / count[ids]
    mrc = np.bincount(which, dr * dc, size)[ids] / count[ids]
    spread = np.sqrt(((mrr - mcc) / 2) ** 2 + mrc**2)
    major, minor = (mrr + mcc) / 2 + spread, (mrr + mcc) / 2 - spread
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(major > 0, np.sqrt(np.clip(1 - minor / major, 0, 1)), 0.0)


def _stain_statistics(labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray, stains: StainVectors) -> dict[str, np.ndarray]:
    # Only nucleus pixels are deconvolved (a fifth of a tile or less), grouped by label with one sort.
    flat = np.flatnonzero(labels > 0)
    which = labels.ravel()[flat].astype(np.intp)
    amounts = stain_amounts(np.asarray(rgb).reshape(-1, 3)[flat][None], stains)[0].astype(np.float64)
    order = np.argsort(which, kind="stable")
    which, amounts = which[order], amounts[order]
    size = max(int(which[-1]) + 1 if which.size else 1, int(ids.max()) + 1)
    count = np.bincount(which, minlength=size)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    present = count[ids] > 0
    h_values = amounts[:, 0]
    safe = np.maximum(count[ids], 1)
    h_mean = np.bincount(which, h_values, size)[ids] / safe
    h_square = np.bincount(which, h_values * h_values, size)[ids] / safe
    h_min = np.full(len(ids), np.nan)
    h_max = np.full(len(ids), np.nan)
    if h_values.size:
        # Reduced over every label's run (reduceat runs to the next start given), then picked.
        groups = np.flatnonzero(count)
        at = np.searchsorted(groups, ids[present])
        h_min[present] = np.minimum.reduceat(h_values, starts[groups])[at]
        h_max[present] = np.maximum.reduceat(h_values, starts[groups])[at]
    return {
        "nucleus_hematoxylin_od_mean": h_mean,
        "nucleus_hematoxylin_od_std": np.sqrt(np.maximum(h_square - h_mean**2, 0)),
        "nucleus_hematoxylin_od_min": h_min,
        "nucleus_hematoxylin_od_max": h_max,
        "nucleus_eosin_od_mean": np.bincount(which, amounts[:, 1], size)[ids] / safe,
    }


@dataclass(frozen=True)
class NucleusMeasurer:
    """Measures the nuclei of label maps at `um_per_px` with the slide's stain vectors."""

    um_per_px: float
    stains: StainVectors = DEFAULT_STAINS

    def __call__(self, labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray, outlines: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One float32 array per MEASUREMENT_COLUMNS entry, in the order of `ids` (`outlines[i]` is the outline of `ids[i]`)."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return {name: np.zeros(0, np.float32) for name in MEASUREMENT_COLUMNS}
        labels = np.asarray(labels)
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != labels.shape:
            rgb = cv2.resize(rgb, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_AREA)
        area, perimeter, convex, longest, narrowest = outline_shapes(outlines).T
        with np.errstate(invalid="ignore", divide="ignore"):
            circularity = np.where(perimeter > 0, np.clip(4 * np.pi * area / perimeter**2, 0, 1), np.nan)
            solidity = np.where(convex > 0, np.clip(area / convex, 0, 1), np.nan)
        columns = {
            "nucleus_perimeter_um": perimeter * self.um_per_px,
            "nucleus_circularity": circularity,
            "nucleus_solidity": solidity,
            "nucleus_eccentricity": _eccentricity(labels, ids),
            "nucleus_max_caliper_um": longest * self.um_per_px,
            "nucleus_min_caliper_um": narrowest * self.um_per_px,
            **_stain_statistics(labels, rgb, ids, self.stains),
        }
        return {name: np.asarray(columns[name], np.float32) for name in MEASUREMENT_COLUMNS}


def measure_labels(
    labels: np.ndarray, rgb: np.ndarray, um_per_px: float, stains: StainVectors = DEFAULT_STAINS
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(label ids, measurements, area µm²) of every nucleus of one image: what a tile's post-processing computes."""
    from wsi_assets.cells.table import nuclei_from_labels

    measurer = NucleusMeasurer(um_per_px, stains)
    table = nuclei_from_labels(labels, measure=lambda ids, outlines: measurer(labels, rgb, ids, outlines), with_ids=True)
    if not len(table):
        return np.zeros(0, np.int64), {name: np.zeros(0, np.float32) for name in MEASUREMENT_COLUMNS}, np.zeros(0)
    return table.columns.pop("label_id").astype(np.int64), table.columns, table.area_pixels * um_per_px * um_per_px
