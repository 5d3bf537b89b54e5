"""µm/px estimated from the nuclei, for a slide or a batch of fields that states none.

This module measures in-memory fields; slides.mpp picks and reads a slide's tissue regions for it.

Haematoxylin (colour deconvolution) is thresholded in tissue, halfway between the typical
nuclear and non-nuclear levels of Otsu's two classes (a real nucleus's edge is a slope, and
Otsu's own cut sits up it, shrinking real nuclei but not the synthetic slides' sharp ones). The
typical nucleus is the area-weighted median equivalent diameter of the blobs (weighting by area
keeps stain specks from counting as nuclei), and µm/px = TYPICAL_NUCLEUS_UM / that diameter.
At coarse resolutions (blobs under ~6 px) neighbours merge and weighting would favour the
merged blobs, so the plain median is used there.

Issue 30 (crops of CMU-1 read 14-22% high as a batch) brought three corrections that make the
typical size depend less on the field. Blobs cut by a field's edge cannot be measured, and a big
blob is cut more often than a small one, so each whole blob counts with its Miles-Lantuéjoul
weight. Blobs over MERGED typical diameters are nuclei run together; a large field holds more of
them whole, so they are left out. A batch pools the blobs of its sampled fields into one
distribution (as a slide pools its regions) instead of taking the median of per-field estimates.

TYPICAL_NUCLEUS_UM is a compromise: this measure gives CMU-1's nuclei 6.6-7.1 µm (256-1024 px
fields) and the synthetic generator's 7.9-8.4 µm (drawn 6-11 µm across), so 7.6 µm puts CMU-1
crops 7-8% high (256² crops 15%) and synthetic fields 4-9% low (`benchmarks/batch_mpp_estimate.py`).
One field's estimate still swings with its tissue (spindly stroma reads small, crowded epithelium
large): per-field errors span -40..+36% on CMU-1 512² fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import rgb2hed

TYPICAL_NUCLEUS_UM = 7.6  # H&E nuclei: lymphocytes ~6 µm, epithelial 8-10 µm; see the module doc
REGION_PX = 512
MAX_REGIONS = 24  # 6 read CMU-1 +14% with the pooled, edge-weighted measure; 24 read +8%
MIN_NUCLEI = 30
COARSE_BLOB_PX = 6.0
FINE_BLOB_PX = 40.0  # above this, too few nuclei fit a region: measure again at a coarser scale
MIN_SATURATION = 20
LARGEST_BLOB = 0.5  # of the field's side: wider blobs are tissue, and their edge weight would explode
MERGED = 2.5  # a blob this many typical diameters across is nuclei run together


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


@dataclass(frozen=True)
class NucleusSizes:
    """The whole haematoxylin blobs of one field: equivalent diameters (px) and edge-correction weights."""

    diameters: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.diameters)


NO_NUCLEI = NucleusSizes(np.zeros(0), np.zeros(0))


def nucleus_sizes(rgb: np.ndarray) -> NucleusSizes:
    """Haematoxylin blobs inside tissue and not touching the field's edge, each weighted for the edge's bias."""
    tissue = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1] > MIN_SATURATION
    if tissue.sum() < 0.1 * tissue.size:
        return NO_NUCLEI
    haematoxylin = rgb2hed(rgb)[..., 0]
    low, high = np.percentile(haematoxylin, [1, 99.5])
    h8 = np.clip((haematoxylin - low) / (high - low + 1e-9) * 255, 0, 255).astype(np.uint8)
    h8 = cv2.GaussianBlur(h8, (3, 3), 0)
    values = h8[tissue]
    otsu, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    nuclear, rest = values[values > otsu], values[values <= otsu]
    # A real nucleus's edge is a slope, not a step; Otsu's cut sits up the slope and shrinks it.
    # Halfway between the typical nuclear and non-nuclear levels is where its edge is.
    threshold = (np.median(nuclear) + np.median(rest)) / 2 if len(nuclear) and len(rest) else otsu
    mask = ((h8 > threshold) & tissue).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, w, h, area = (stats[1:, i].astype(np.float64) for i in range(5))
    height, width = mask.shape
    inner = (x > 0) & (y > 0) & (x + w < width) & (y + h < height) & (area >= 2)
    inner &= (w < LARGEST_BLOB * width) & (h < LARGEST_BLOB * height)
    # Miles-Lantuéjoul: a blob of box w x h lies wholly inside with chance (W - w - 1)(H - h - 1) / WH
    # (it must not touch the edge either), so the whole blobs seen undercount big nuclei by that much.
    weights = (width * height) / ((width - w[inner] - 1) * (height - h[inner] - 1))
    return NucleusSizes(2.0 * np.sqrt(area[inner] / np.pi), weights)


def typical_diameter(diameters: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area-weighted median diameter, or the plain median where blobs are a few px (see module doc).

    `weights` multiply the area weights (the edge correction of `nucleus_sizes`). Blobs over
    MERGED typical diameters are left out and the median taken again: the area weight lets a few
    merged sheets pull it up, the more so the larger the field (they are cut off in small ones).
    """
    diameters = np.asarray(diameters, np.float64)
    weights = np.ones_like(diameters) if weights is None else np.asarray(weights, np.float64)
    typical = _weighted_median(diameters, weights)
    for _ in range(3):
        kept = diameters <= MERGED * typical
        if kept.all() or not kept.any():
            break
        typical = _weighted_median(diameters[kept], weights[kept])
    return typical


def _weighted_median(diameters: np.ndarray, weights: np.ndarray) -> float:
    if len(diameters) == 0:
        return 0.0
    order = np.argsort(diameters)
    ordered = diameters[order]
    cumulative = np.cumsum(ordered**2 * weights[order])
    weighted = float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])
    return weighted if weighted >= COARSE_BLOB_PX else float(np.median(ordered))


def pooled(fields: list[NucleusSizes]) -> NucleusSizes:
    fields = [f for f in fields if len(f)]
    if not fields:
        return NO_NUCLEI
    return NucleusSizes(np.concatenate([f.diameters for f in fields]), np.concatenate([f.weights for f in fields]))


def estimate_mpp_from_fields(fields: list[NucleusSizes]) -> MppEstimate | None:
    """µm/px of fields from one microscope (a batch's sample): their blobs pooled into one typical nucleus."""
    sizes = pooled(fields)
    if len(sizes) < MIN_NUCLEI:
        return None
    diameter = typical_diameter(sizes.diameters, sizes.weights)
    regions = sum(1 for f in fields if len(f))
    return MppEstimate(TYPICAL_NUCLEUS_UM / diameter, len(sizes), diameter, regions) if diameter > 0 else None


def estimate_mpp_from_image(rgb: np.ndarray) -> MppEstimate | None:
    """µm/px from the nuclei of one in-memory RGB field, or None when too few can be measured."""
    return estimate_mpp_from_fields([nucleus_sizes(rgb)])
