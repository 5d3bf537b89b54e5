"""Quality checks on a slide's segmentation, as plain functions over the stored cells."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from wsi_assets.cells.store import read_cell_columns, read_cells_where
from wsi_assets.segmentation.border_dedup import same_nucleus
from wsi_assets.slides.tissue import TissueMask

# Nuclei per mm² of tissue. Sparse stroma has a few hundred; dense lymphoid tissue ~15,000.
PLAUSIBLE_DENSITY_PER_MM2 = (50.0, 25_000.0)
MIN_FRACTION_IN_TISSUE = 0.9
# Nuclei of different tiles closer than this are compared outline against outline.
CANDIDATE_DISTANCE_UM = 8.0


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict


def nuclei_in_tissue(cells_path: Path, tissue: TissueMask) -> CheckOutcome:
    cols = read_cell_columns(cells_path, ["centroid_x", "centroid_y"])
    count = len(cols["centroid_x"])
    if tissue.area_mm2 == 0:
        return CheckOutcome(count == 0, "no tissue detected", {"nuclei": count, "tissue_mm2": 0.0})
    r = np.clip((cols["centroid_y"] / tissue.downsample).astype(int), 0, tissue.mask.shape[0] - 1)
    c = np.clip((cols["centroid_x"] / tissue.downsample).astype(int), 0, tissue.mask.shape[1] - 1)
    # The mask is coarse: count a nucleus as in tissue when it is within one mask pixel of it.
    near_tissue = cv2.dilate(tissue.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    fraction = float(near_tissue[r, c].mean()) if count else 0.0
    passed = count > 0 and fraction >= MIN_FRACTION_IN_TISSUE
    return CheckOutcome(
        passed,
        f"{count} nuclei; {fraction:.1%} of them lie in the tissue mask (need > 0 nuclei and ≥ {MIN_FRACTION_IN_TISSUE:.0%})",
        {"nuclei": count, "fraction_in_tissue": round(fraction, 4), "tissue_mm2": round(tissue.area_mm2, 4)},
    )


def nuclei_density(cells_path: Path, tissue: TissueMask) -> CheckOutcome:
    count = len(read_cell_columns(cells_path, ["cell_id"])["cell_id"])
    low, high = PLAUSIBLE_DENSITY_PER_MM2
    if tissue.area_mm2 == 0:
        return CheckOutcome(True, "no tissue detected: density not applicable", {"nuclei": count})
    density = count / tissue.area_mm2
    return CheckOutcome(
        low <= density <= high,
        f"{density:.0f} nuclei per mm² of tissue (plausible: {low:.0f}–{high:.0f})",
        {"nuclei_per_mm2": round(density, 1), "nuclei": count, "tissue_mm2": round(tissue.area_mm2, 4)},
    )


def border_duplicates(cells_path: Path, mpp: float) -> CheckOutcome:
    """Nuclei from different tiles that are one nucleus: close, and a centroid inside the other outline."""
    cols = read_cell_columns(cells_path, ["cell_id", "centroid_x", "centroid_y", "tile_row", "tile_col"])
    points = np.stack([cols["centroid_x"], cols["centroid_y"]], axis=1)
    duplicates = []
    if len(points) > 1:
        pairs = cKDTree(points).query_pairs(CANDIDATE_DISTANCE_UM / mpp, output_type="ndarray")
        different_tile = (cols["tile_row"][pairs[:, 0]] != cols["tile_row"][pairs[:, 1]]) | (
            cols["tile_col"][pairs[:, 0]] != cols["tile_col"][pairs[:, 1]]
        )
        pairs = pairs[different_tile]
        polygons = _polygons_by_id(cells_path, np.unique(cols["cell_id"][pairs.ravel()]))
        for a, b in pairs:
            id_a, id_b = int(cols["cell_id"][a]), int(cols["cell_id"][b])
            if same_nucleus(polygons[id_a], points[a], polygons[id_b], points[b]):
                duplicates.append([id_a, id_b])
    return CheckOutcome(
        len(duplicates) == 0,
        f"{len(duplicates)} nuclei reported twice by neighbouring tiles",
        {"duplicate_pairs": len(duplicates), "example_cell_id_pairs": duplicates[:10]},
    )


def _polygons_by_id(cells_path: Path, cell_ids: np.ndarray) -> dict[int, np.ndarray]:
    if len(cell_ids) == 0:
        return {}
    polygons = {}
    for ids, nuclei, _ in read_cells_where(cells_path, [("cell_id", "in", [int(i) for i in cell_ids])]):
        polygons.update({int(cell_id): nuclei.polygon(i) for i, cell_id in enumerate(ids)})
    return polygons
