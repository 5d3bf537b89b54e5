"""Weight-free nucleus segmentation for fluorescence (bright nuclei on a dark background).

The floor the fluorescence model is measured against, and the fallback without a model:
1. the channel is scaled by its 1st..99.8th percentiles and lightly smoothed;
2. foreground = Otsu threshold of the smoothed channel, holes filled, specks removed;
3. the nucleus size is taken from the foreground's connected components (median equivalent
   diameter), unless the caller knows it; every length below scales with it;
4. touching nuclei are split by a watershed on the distance transform seeded by its h-maxima
   (`classical.split_touching`), and instances far smaller or larger than a nucleus dropped.

Works on one 2-D channel of any integer or float dtype, at its own pixel size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from wsi_assets.segmentation.classical import clean_mask, filter_instances, split_touching


@dataclass(frozen=True)
class FluorescenceClassicalParams:
    """Lengths as fractions of the median nucleus diameter, areas of the median nucleus area."""

    smooth_fraction: float = 0.08
    marker_h_fraction: float = 0.12  # a distance peak must rise this far above its saddle to seed
    max_hole_fraction: float = 0.3
    min_area_fraction: float = 0.1
    max_area_fraction: float = 8.0
    min_component_px: int = 9  # components smaller than this do not vote on the nucleus size


def scaled_channel(image: np.ndarray) -> np.ndarray:
    """float32 with the 1st and 99.8th percentiles at 0 and 1 (a flat image gives zeros)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"a fluorescence channel must be a 2-D array, got {image.ndim} dimensions")
    channel = image.astype(np.float32)
    low, high = np.percentile(channel, [1.0, 99.8])
    if not high > low:
        return np.zeros(channel.shape, np.float32)
    return (channel - low) / (high - low)


def foreground(channel: np.ndarray, sigma_px: float) -> np.ndarray:
    """uint8 0/1 Otsu mask of a scaled channel smoothed by `sigma_px` (all zeros when flat)."""
    smooth = cv2.GaussianBlur(channel, (0, 0), max(sigma_px, 0.3))
    if float(smooth.max() - smooth.min()) < 1e-6:
        return np.zeros(channel.shape, np.uint8)
    return (smooth > threshold_otsu(smooth)).astype(np.uint8)


def estimate_nucleus_diameter(image: np.ndarray, params: FluorescenceClassicalParams | None = None) -> float | None:
    """Median equivalent diameter (pixels) of the Otsu foreground's components, or None when
    there is no foreground. Clumps of touching nuclei bias it up a little; the median keeps
    isolated nuclei in charge wherever most nuclei are apart."""
    params = params or FluorescenceClassicalParams()
    mask = foreground(scaled_channel(image), 1.0)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= params.min_component_px]
    if areas.size == 0:
        return None
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def segment_fluorescence_classical(
    image: np.ndarray, nucleus_diameter_px: float | None = None, params: FluorescenceClassicalParams | None = None
) -> np.ndarray:
    """int32 (H,W) labels 0..n of bright nuclei in a 2-D fluorescence channel."""
    params = params or FluorescenceClassicalParams()
    channel = scaled_channel(image)
    diameter = nucleus_diameter_px or estimate_nucleus_diameter(image, params)
    if not diameter:
        return np.zeros(channel.shape, np.int32)
    if not diameter > 0:
        raise ValueError(f"nucleus_diameter_px must be positive, got {nucleus_diameter_px}")
    area = math.pi * diameter**2 / 4
    sigma = params.smooth_fraction * diameter
    mask = clean_mask(foreground(channel, sigma), params.max_hole_fraction * area)
    max_area = params.max_area_fraction * area
    labels = split_touching(mask, params.marker_h_fraction * diameter, sigma, 2 * math.sqrt(max_area / math.pi))
    return filter_instances(labels, params.min_area_fraction * area, max_area, 0.0)
