"""QuPath-style measurements of each nucleus of a label map: shape, size and stain optical density.

Shape comes from the traced outline (a polygon through boundary pixel centres, the one the
cell table stores), so area, perimeter, circularity and solidity all describe the same polygon,
as QuPath's do. Optical density comes from every pixel of the nucleus after colour deconvolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

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


def _calipers(hull: np.ndarray) -> tuple[float, float]:
    """Largest distance between two hull points, and the smallest width of the hull over its edge directions."""
    points = hull.reshape(-1, 2).astype(np.float64)
    if len(points) < 2:
        return 0.0, 0.0
    differences = points[:, None, :] - points[None, :, :]
    longest = float(np.sqrt((differences**2).sum(-1).max()))
    if len(points) < 3:
        return longest, 0.0
    edges = np.roll(points, -1, axis=0) - points
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    edges, starts = edges[lengths > 0], points[lengths > 0]
    lengths = lengths[lengths > 0]
    # Width across each edge: the farthest any hull point lies from that edge's line.
    cross = np.abs(edges[:, None, 0] * (points[None, :, 1] - starts[:, None, 1]) - edges[:, None, 1] * (points[None, :, 0] - starts[:, None, 0]))
    return longest, float((cross.max(axis=1) / lengths).min())


def outline_shape(outline: np.ndarray) -> tuple[float, float, float, float, float]:
    """(area, perimeter, convex area, max caliper, min caliper) of one closed outline, in its own pixel units."""
    outline = cv2.approxPolyDP(outline, SHAPE_TOLERANCE_PX, True)
    area = float(cv2.contourArea(outline))
    perimeter = float(cv2.arcLength(outline, True))
    hull = cv2.convexHull(outline)
    longest, narrowest = _calipers(hull)
    return area, perimeter, float(cv2.contourArea(hull)), longest, narrowest


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
    amounts = stain_amounts(rgb, stains)
    haematoxylin, eosin = amounts[..., 0].astype(np.float64), amounts[..., 1].astype(np.float64)
    flat = np.flatnonzero(labels > 0)
    which = labels.ravel()[flat].astype(np.intp)
    size = max(int(which.max()) + 1 if which.size else 1, int(ids.max()) + 1)
    h_values = haematoxylin.ravel()[flat]
    count = np.maximum(np.bincount(which, minlength=size)[ids], 1)
    h_mean = np.bincount(which, h_values, size)[ids] / count
    h_square = np.bincount(which, h_values * h_values, size)[ids] / count
    return {
        "nucleus_hematoxylin_od_mean": h_mean,
        "nucleus_hematoxylin_od_std": np.sqrt(np.maximum(h_square - h_mean**2, 0)),
        "nucleus_hematoxylin_od_min": np.asarray(ndi.minimum(haematoxylin, labels, ids), np.float64),
        "nucleus_hematoxylin_od_max": np.asarray(ndi.maximum(haematoxylin, labels, ids), np.float64),
        "nucleus_eosin_od_mean": np.bincount(which, eosin.ravel()[flat], size)[ids] / count,
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
        shapes = np.asarray([outline_shape(outline) for outline in outlines], np.float64).reshape(-1, 5)
        area, perimeter, convex, longest, narrowest = shapes.T
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


def measure_labels(labels: np.ndarray, rgb: np.ndarray, um_per_px: float, stains: StainVectors = DEFAULT_STAINS) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(label ids, measurements, area µm²) of every nucleus of one image: what a tile's post-processing computes."""
    from wsi_assets.cells.table import nuclei_from_labels

    measurer = NucleusMeasurer(um_per_px, stains)
    table = nuclei_from_labels(labels, measure=lambda ids, outlines: measurer(labels, rgb, ids, outlines), with_ids=True)
    if not len(table):
        return np.zeros(0, np.int64), {name: np.zeros(0, np.float32) for name in MEASUREMENT_COLUMNS}, np.zeros(0)
    return table.columns.pop("label_id").astype(np.int64), table.columns, table.area_pixels * um_per_px * um_per_px
