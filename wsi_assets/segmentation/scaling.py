"""An image's µm/px checked, and images and label maps resized between µm/px: shared by both families' segmentation."""

from __future__ import annotations

import cv2
import numpy as np

from wsi_assets.core.quoting import short_repr

# Scale factors this close to 1 are treated as 1: resampling would only blur.
_SCALE_TOLERANCE = 1e-3


def check_mpp(mpp: float) -> float:
    """`mpp` as a float, or a ValueError unless it is a finite positive number."""
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {short_repr(mpp)}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {short_repr(mpp)}")
    return value


def resample_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Image resized by `scale` (area-averaged down, bilinear up); identity near scale 1."""
    if abs(scale - 1.0) < _SCALE_TOLERANCE:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map by index lookup (cv2 cannot resize int32 exactly)."""
    src_h, src_w = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * src_h / shape[0]).astype(np.intp), src_h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * src_w / shape[1]).astype(np.intp), src_w - 1)
    return labels[rows[:, np.newaxis], cols[np.newaxis, :]]
