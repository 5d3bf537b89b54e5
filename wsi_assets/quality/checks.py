"""Quality checks on a slide's segmentation, as plain functions over the stored cells."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from wsi_assets.cells.store import read_cell_columns, read_cells_where
from wsi_assets.segmentation.border_dedup import same_nucleus
from wsi_assets.slides.reader import SlideInfo
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


def nuclei_density(cells_path: Path, tissue: TissueMask, info: SlideInfo | None = None) -> CheckOutcome:
    """Nuclei per mm² of tissue within what tissue has; outside it, the µm/px is the first suspect."""
    count = len(read_cell_columns(cells_path, ["cell_id"])["cell_id"])
    low, high = PLAUSIBLE_DENSITY_PER_MM2
    if tissue.area_mm2 == 0:
        return CheckOutcome(True, "no tissue detected: density not applicable", {"nuclei": count})
    density = count / tissue.area_mm2
    metadata = {"nuclei_per_mm2": round(density, 1), "nuclei": count, "tissue_mm2": round(tissue.area_mm2, 4)}
    description = f"{density:.0f} nuclei per mm² of tissue (plausible: {low:.0f}–{high:.0f})"
    passed = low <= density <= high
    if info is not None:
        metadata.update(mpp=round(info.mpp, 4), mpp_source=info.mpp_source)
        description = (
            f"{density:.0f} nuclei per mm² of tissue at {info.mpp:.3f} µm/px ({info.mpp_source}; plausible: {low:.0f}–{high:.0f})"
        )
        if not passed:
            description += f": the µm/px is probably wrong; {_state_mpp_hint(info)}"
    return CheckOutcome(passed, description, metadata)


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


# --------------------------------------------------------------- is the slide's µm/px trustworthy?
# A wrong µm/px fails silently: nuclei are sought at the wrong size and every count looks sane.
TYPICAL_NUCLEUS_UM = 7.0
MAX_MPP_FOR_NUCLEI = 1.5  # coarser than this, a nucleus is under 5 px across: no segmenter separates them


def _state_mpp_hint(info: SlideInfo) -> str:
    stem = Path(info.path).stem
    return f"state the true µm/px in {stem}.yaml beside the slide ('mpp: 0.5') or in the branch's branch.yaml"


def resolution_fine_enough(info: SlideInfo) -> CheckOutcome:
    """The slide's level-0 µm/px resolves nuclei."""
    nucleus_px = TYPICAL_NUCLEUS_UM / info.mpp
    metadata = {
        "mpp": round(info.mpp, 4),
        "mpp_source": info.mpp_source,
        "mpp_inferred": info.mpp_inferred,
        "nucleus_px": round(nucleus_px, 1),
    }
    if info.mpp > MAX_MPP_FOR_NUCLEI:
        return CheckOutcome(
            False,
            f"{info.mpp:.2f} µm/px ({info.mpp_source}) makes a {TYPICAL_NUCLEUS_UM:g} µm nucleus {nucleus_px:.1f} px across; "
            f"nuclei need ≤ {MAX_MPP_FOR_NUCLEI} µm/px: upload a 20x or 40x scan, or if this µm/px is wrong, {_state_mpp_hint(info)}",
            metadata,
        )
    flagged = " (inferred: check it)" if info.mpp_inferred else ""
    return CheckOutcome(
        True, f"{info.mpp:.3f} µm/px ({info.mpp_source}{flagged}): nuclei about {nucleus_px:.0f} px across", metadata
    )
