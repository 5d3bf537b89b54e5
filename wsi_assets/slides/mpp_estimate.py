"""µm/px estimated from the nuclei, for a slide that states none and has no objective power.

Haematoxylin (colour deconvolution) is thresholded (Otsu) in a few tissue regions; the typical
nucleus is the area-weighted median equivalent diameter of the blobs (weighting by area keeps
stain specks from counting as nuclei), and µm/px = TYPICAL_NUCLEUS_UM / that diameter.
At coarse resolutions (blobs under ~6 px) neighbours merge and weighting would favour the
merged blobs, so the plain median is used there. Measured: real 20x CMU-1 H&E (0.499 µm/px)
+10..+20 %; synthetic slides at 0.25-4 µm/px -10..-25 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import openslide
from skimage.color import rgb2hed

TYPICAL_NUCLEUS_UM = 7.0  # H&E nuclei: lymphocytes ~6 µm, epithelial 8-10 µm
REGION_PX = 512
MAX_REGIONS = 6
MIN_NUCLEI = 30
COARSE_BLOB_PX = 6.0
FINE_BLOB_PX = 40.0  # above this, too few nuclei fit a region: measure again at a coarser scale
MIN_SATURATION = 20


@dataclass(frozen=True)
class MppEstimate:
    mpp: float
    nuclei: int
    diameter_px: float  # typical nucleus in level-0 px
    regions: int

    @property
    def detail(self) -> str:
        return (
            f"typical nucleus {self.diameter_px:.1f} px across ({self.nuclei} blobs in {self.regions} tissue regions), "
            f"taken as {TYPICAL_NUCLEUS_UM:g} µm"
        )


def _blob_diameters(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters (px) of haematoxylin blobs inside tissue, not touching the region edge."""
    tissue = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1] > MIN_SATURATION
    if tissue.sum() < 0.1 * tissue.size:
        return np.zeros(0)
    haematoxylin = rgb2hed(rgb)[..., 0]
    low, high = np.percentile(haematoxylin, [1, 99.5])
    h8 = np.clip((haematoxylin - low) / (high - low + 1e-9) * 255, 0, 255).astype(np.uint8)
    h8 = cv2.GaussianBlur(h8, (3, 3), 0)
    threshold, _ = cv2.threshold(h8[tissue], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((h8 > threshold) & tissue).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, w, h, area = (stats[1:, i] for i in range(5))
    inner = (x > 0) & (y > 0) & (x + w < mask.shape[1]) & (y + h < mask.shape[0]) & (area >= 2)
    return 2.0 * np.sqrt(area[inner] / np.pi)


def typical_diameter(diameters: np.ndarray) -> float:
    """Area-weighted median diameter, or the plain median where blobs are a few px (see module doc)."""
    if len(diameters) == 0:
        return 0.0
    order = np.sort(diameters)
    weights = np.cumsum(order**2)
    weighted = float(order[np.searchsorted(weights, weights[-1] / 2)])
    return weighted if weighted >= COARSE_BLOB_PX else float(np.median(order))


def _tissue_points(slide: openslide.OpenSlide) -> list[tuple[int, int]]:
    """Level-0 centres of up to MAX_REGIONS tissue regions, spread over the tissue of the coarsest level."""
    from wsi_assets.slides.reader import read_level_rgb

    level = slide.level_count - 1
    width, height = slide.level_dimensions[level]
    downsample = slide.level_downsamples[level]
    rgb = read_level_rgb(slide, 0, 0, level, width, height)
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    rows, cols = np.nonzero(saturation > MIN_SATURATION)
    if len(rows) == 0:
        return []
    picks = np.linspace(0, len(rows) - 1, MAX_REGIONS + 2)[1:-1].astype(int)
    return [(int(cols[i] * downsample), int(rows[i] * downsample)) for i in picks]


def _measure_at(slide: openslide.OpenSlide, points, scale: float) -> tuple[np.ndarray, int]:
    """Blob diameters in level-0 px from regions of REGION_PX output px at `scale` level-0 px per px."""
    from wsi_assets.slides.reader import read_region_at_downsample

    width, height = slide.dimensions
    side = int(REGION_PX * scale)
    found, regions = [], 0
    for cx, cy in points:
        x0 = int(min(max(0, cx - side // 2), max(0, width - side)))
        y0 = int(min(max(0, cy - side // 2), max(0, height - side)))
        rgb = read_region_at_downsample(slide, x0, y0, min(side, width), min(side, height), scale)
        diameters = _blob_diameters(rgb)
        if len(diameters):
            found.append(diameters * scale)
            regions += 1
    return (np.concatenate(found) if found else np.zeros(0)), regions


def estimate_mpp_from_nuclei(slide: openslide.OpenSlide) -> MppEstimate | None:
    """Level-0 µm/px from the typical nucleus size, or None when too few nuclei are seen."""
    points = _tissue_points(slide)
    if not points:
        return None
    scale = 1.0
    for _ in range(4):
        diameters, regions = _measure_at(slide, points, scale)
        if len(diameters) < MIN_NUCLEI:
            return None
        typical = typical_diameter(diameters / scale) * scale
        if typical / scale <= FINE_BLOB_PX or scale * REGION_PX * 4 > max(slide.dimensions):
            break
        scale *= 4  # large nuclei: few fit a region, so look at a wider field
    return MppEstimate(mpp=TYPICAL_NUCLEUS_UM / typical, nuclei=len(diameters), diameter_px=typical, regions=regions)


def estimate_mpp_from_image(rgb: np.ndarray) -> MppEstimate | None:
    """µm/px from the nuclei of one in-memory RGB field (a batch image), or None when too few can be measured."""
    diameters = _blob_diameters(rgb)
    if len(diameters) < MIN_NUCLEI:
        return None
    diameter = typical_diameter(diameters)
    return MppEstimate(TYPICAL_NUCLEUS_UM / diameter, len(diameters), diameter, 1) if diameter > 0 else None
