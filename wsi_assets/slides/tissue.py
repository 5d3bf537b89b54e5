"""Tissue detection on a low-resolution image of the slide."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

TISSUE_MASK_MPP = 8.0  # µm per mask pixel: fine enough to skip glass between tissue pieces
MIN_MASK_LONG_SIDE = 512
MIN_SATURATION = 20  # of 255: glass and dust stay below this whatever Otsu says
MIN_TISSUE_AREA_UM2 = 20_000.0  # specks smaller than ~0.14 mm across are debris


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray  # bool (h, w)
    downsample: float  # level-0 px per mask px
    mpp: float  # level-0 µm/px

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def area_mm2(self) -> float:
        pixel_mm = self.downsample * self.mpp / 1000.0
        return float(self.mask.sum()) * pixel_mm * pixel_mm

    def covers(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether any tissue lies in the level-0 box [x0, x1) x [y0, y1)."""
        c0 = max(0, int(np.floor(x0 / self.downsample)))
        r0 = max(0, int(np.floor(y0 / self.downsample)))
        c1 = min(self.mask.shape[1], int(np.ceil(x1 / self.downsample)))
        r1 = min(self.mask.shape[0], int(np.ceil(y1 / self.downsample)))
        return c1 > c0 and r1 > r0 and bool(self.mask[r0:r1, c0:c1].any())


def tissue_mask_downsample(width: int, height: int, mpp: float) -> float:
    """Level-0 px per mask px: TISSUE_MASK_MPP, but finer for small slides so the mask has detail."""
    by_resolution = TISSUE_MASK_MPP / mpp
    by_size = max(width, height) / MIN_MASK_LONG_SIDE
    return max(1.0, min(by_resolution, by_size))


def detect_tissue(rgb: np.ndarray, downsample: float, mpp: float) -> TissueMask:
    """Tissue where colour saturation is above glass (Otsu, with a floor), cleaned up morphologically."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    saturation = cv2.GaussianBlur(hsv[..., 1], (5, 5), 0)
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(float(otsu), float(MIN_SATURATION))
    # Pen marks and black borders are saturated or dark but not tissue-coloured; very dark is excluded.
    not_black = rgb.max(axis=2) > 40
    mask = (saturation > threshold) & not_black
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    mask = ndi.binary_fill_holes(mask)
    mask = _remove_small_regions(mask, MIN_TISSUE_AREA_UM2 / (downsample * mpp) ** 2)
    return TissueMask(mask=mask, downsample=downsample, mpp=mpp)


def _remove_small_regions(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[labels]
