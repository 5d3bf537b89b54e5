"""Small images for the Dagster UI: encoded and embedded in markdown metadata."""

from __future__ import annotations

import base64

import cv2
import numpy as np

MAX_EMBED_BYTES = 80_000  # the UI stores metadata in the run database: keep each image tens of KB


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def small_jpeg(rgb: np.ndarray, max_side: int = 512) -> bytes:
    """A JPEG of at most MAX_EMBED_BYTES, shrinking quality then size until it fits."""
    image = fit_within(rgb, max_side)
    while True:
        for quality in (85, 70, 55):
            data = encode_jpeg(image, quality)
            if len(data) <= MAX_EMBED_BYTES:
                return data
        image = fit_within(image, int(max(image.shape[:2]) * 0.75))


def markdown_image(jpeg: bytes, alt: str) -> str:
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(jpeg).decode('ascii')})"


def tissue_overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The thumbnail with tissue tinted green and its outline drawn."""
    mask_full = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    overlay = rgb.copy()
    tint = np.array([40, 200, 80], np.float32)
    overlay[mask_full > 0] = (0.6 * overlay[mask_full > 0] + 0.4 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(mask_full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(overlay, contours, -1, (0, 120, 0), max(1, rgb.shape[1] // 400))
    return overlay
