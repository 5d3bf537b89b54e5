"""Image files and small images for the Dagster UI: read, encoded, and embedded in markdown metadata."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

from wsi_assets.core.markdown import escape_markdown

MAX_EMBED_BYTES = 80_000  # the UI stores metadata in the run database: keep each image tens of KB


def read_image_file_rgb(path: Path) -> np.ndarray:
    """An image file (PNG, JPEG, TIFF) as uint8 RGB (H,W,3); ValueError when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
    return f"![{escape_markdown(alt)}](data:image/jpeg;base64,{base64.b64encode(jpeg).decode('ascii')})"
