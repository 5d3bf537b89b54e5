"""Where the lymphocytes are: inflammatory nuclei per mm² of tissue, within epithelium and stroma.

Pathologists read tumour-infiltrating lymphocytes per compartment, so a slide-wide density is not
enough. The compartments are drawn from the nuclei themselves: the tissue is cut into squares of
`GRID_UM` (50 µm, a few cells across), and a square whose non-inflammatory nuclei are mostly
epithelial is epithelium, any other tissue square is stroma. Inflammatory nuclei are then counted
per compartment and divided by its tissue area. With classes that cannot tell epithelium apart
(the lymphocyte rule knows only inflammatory and other), the compartments are left out (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from wsi_assets.slides.tissue import TissueMask

GRID_UM = 50.0
INFLAMMATORY, EPITHELIAL = "inflammatory", "epithelial"
# Squares whose non-inflammatory nuclei are at least this share epithelial count as epithelium.
EPITHELIAL_SHARE = 0.5


@dataclass(frozen=True)
class LymphocyteDensity:
    per_mm2: float
    epithelium_per_mm2: float | None
    stroma_per_mm2: float | None
    epithelium_mm2: float
    stroma_mm2: float
    grid_um: float
    counts: np.ndarray  # inflammatory nuclei per square (rows, cols), level-0 grid from the slide's origin
    tissue_mm2: np.ndarray  # tissue area per square, mm²

    def figures(self) -> dict:
        """The figures summary.json, classes.json and summary.xlsx carry."""
        return {
            "lymphocytes_per_mm2": self.per_mm2,
            "lymphocytes_per_mm2_epithelium": self.epithelium_per_mm2,
            "lymphocytes_per_mm2_stroma": self.stroma_per_mm2,
            "epithelium_mm2": round(self.epithelium_mm2, 4),
            "stroma_mm2": round(self.stroma_mm2, 4),
            "compartment_grid_um": self.grid_um,
        }

    def density_map(self) -> np.ndarray:
        """Inflammatory nuclei per mm² of tissue in each square (0 where there is no tissue)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.tissue_mm2 > 0, self.counts / np.maximum(self.tissue_mm2, 1e-12), 0.0)


def _square_tissue_mm2(tissue: TissueMask, shape: tuple[int, int], square_px: float) -> np.ndarray:
    """Tissue area (mm²) of each square, from the mask's pixels whose centres fall in it."""
    rows, cols = np.nonzero(tissue.mask)
    r = np.minimum(((rows + 0.5) * tissue.downsample / square_px).astype(np.int64), shape[0] - 1)
    c = np.minimum(((cols + 0.5) * tissue.downsample / square_px).astype(np.int64), shape[1] - 1)
    pixel_mm2 = (tissue.downsample * tissue.mpp / 1000.0) ** 2
    area = np.zeros(shape, np.float64)
    np.add.at(area, (r, c), pixel_mm2)
    return area


def _per_square(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], square_px: float) -> np.ndarray:
    counts = np.zeros(shape, np.int64)
    if len(x):
        r = np.clip((np.asarray(y, np.float64) / square_px).astype(np.int64), 0, shape[0] - 1)
        c = np.clip((np.asarray(x, np.float64) / square_px).astype(np.int64), 0, shape[1] - 1)
        np.add.at(counts, (r, c), 1)
    return counts


def lymphocyte_density(
    x: np.ndarray, y: np.ndarray, classes: np.ndarray, tissue: TissueMask, grid_um: float = GRID_UM
) -> LymphocyteDensity:
    """Densities of the inflammatory nuclei at level-0 centroids (x, y) with their `classes`."""
    if grid_um <= 0:
        raise ValueError(f"the compartment grid must be a positive number of µm, got {grid_um}")
    square_px = grid_um / tissue.mpp
    height, width = (np.asarray(tissue.mask.shape) * tissue.downsample).tolist()
    shape = (max(1, int(np.ceil(height / square_px))), max(1, int(np.ceil(width / square_px))))
    classes = np.asarray(classes, object)
    inflammatory = classes == INFLAMMATORY
    counts = _per_square(x[inflammatory], y[inflammatory], shape, square_px)
    area = _square_tissue_mm2(tissue, shape, square_px)
    total_mm2 = float(area.sum())
    per_mm2 = round(float(inflammatory.sum()) / total_mm2, 1) if total_mm2 else 0.0
    epithelial = classes == EPITHELIAL
    if not epithelial.any():
        return LymphocyteDensity(per_mm2, None, None, 0.0, 0.0, grid_um, counts, area)
    epithelial_counts = _per_square(x[epithelial], y[epithelial], shape, square_px)
    others = _per_square(x[~inflammatory], y[~inflammatory], shape, square_px)
    in_epithelium = (area > 0) & (epithelial_counts > 0) & (epithelial_counts >= EPITHELIAL_SHARE * others)
    in_stroma = (area > 0) & ~in_epithelium
    # Nuclei counted in a square without tissue (the mask is coarse) go to no compartment.
    epithelium_mm2, stroma_mm2 = float(area[in_epithelium].sum()), float(area[in_stroma].sum())

    def density(where: np.ndarray, mm2: float) -> float | None:
        return round(float(counts[where].sum()) / mm2, 1) if mm2 else None

    return LymphocyteDensity(
        per_mm2,
        density(in_epithelium, epithelium_mm2),
        density(in_stroma, stroma_mm2),
        epithelium_mm2,
        stroma_mm2,
        grid_um,
        counts,
        area,
    )


def smoothed_density(density: LymphocyteDensity, sigma_squares: float = 1.5) -> np.ndarray:
    """The density map smoothed over neighbouring squares (counts and tissue smoothed alike, then divided)."""
    counts = cv2.GaussianBlur(density.counts.astype(np.float32), (0, 0), sigma_squares)
    area = cv2.GaussianBlur(density.tissue_mm2.astype(np.float32), (0, 0), sigma_squares)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((density.tissue_mm2 > 0) & (area > 0), counts / np.maximum(area, 1e-12), 0.0)
