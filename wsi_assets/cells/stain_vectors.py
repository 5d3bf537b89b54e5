"""H&E colour deconvolution: optical density, stain vectors estimated per slide, and per-pixel stain amounts.

Optical density is QuPath's: OD = log10(255 / I) per channel, I clipped to 1..255. A stain
vector is the OD direction (unit length, RGB) of one stain; a pixel's OD is the sum of each
stain's amount times its vector, so amounts come from the inverse of the 3x3 matrix whose rows
are haematoxylin, eosin and their cross product (the residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsi_assets.core.optical_density import WHITE
from wsi_assets.core.optical_density import optical_density as core_optical_density

MAX_INTENSITY = WHITE
# Ruifrok & Johnston (2001), the H&E vectors QuPath's "H&E default" also uses.
DEFAULT_HAEMATOXYLIN = (0.651, 0.701, 0.290)
DEFAULT_EOSIN = (0.216, 0.801, 0.558)
# Macenko: pixels with OD below this in any channel are background (glass) and left out.
MIN_TISSUE_OD = 0.15
# A slide's own vectors are used only when they stay this close to the default (cosine);
# otherwise the estimate was thrown off (pen marks, few tissue pixels) and the default is safer.
MIN_COSINE_TO_DEFAULT = 0.85
MIN_PIXELS_FOR_ESTIMATE = 2_000


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


@dataclass(frozen=True)
class StainVectors:
    haematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    source: str = "default"  # "default" (Ruifrok & Johnston) or "estimated" (Macenko on the slide's tissue)

    def matrix(self) -> np.ndarray:
        """Rows: haematoxylin, eosin, residual (unit OD vectors)."""
        h, e = _unit(self.haematoxylin), _unit(self.eosin)
        return np.stack([h, e, _unit(np.cross(h, e))])

    def as_dict(self) -> dict:
        return {
            "haematoxylin": [round(v, 4) for v in self.haematoxylin],
            "eosin": [round(v, 4) for v in self.eosin],
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "StainVectors":
        return cls(tuple(data["haematoxylin"]), tuple(data["eosin"]), data.get("source", "stored"))


DEFAULT_STAINS = StainVectors(DEFAULT_HAEMATOXYLIN, DEFAULT_EOSIN, "default")


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel OD (float32, same shape), log10(255 / I) with I clipped to 1..255 (core.optical_density's defaults)."""
    return core_optical_density(rgb)


def stain_amounts(rgb: np.ndarray, stains: StainVectors) -> np.ndarray:
    """(H, W, 2) float32: haematoxylin and eosin OD of each pixel."""
    od = optical_density(rgb).reshape(-1, 3)
    amounts = od @ np.linalg.inv(stains.matrix()).astype(np.float32)
    return amounts[:, :2].reshape(*np.asarray(rgb).shape[:2], 2)


def estimate_stain_vectors(rgb: np.ndarray, tissue: np.ndarray | None = None, percentile: float = 1.0) -> StainVectors:
    """Macenko et al. (2009) on the tissue pixels of a low-resolution image; the default when unsure."""
    od = optical_density(rgb).reshape(-1, 3).astype(np.float64)
    chosen = np.all(od > MIN_TISSUE_OD, axis=1)
    if tissue is not None:
        chosen &= np.asarray(tissue, bool).reshape(-1)
    od = od[chosen]
    if len(od) < MIN_PIXELS_FOR_ESTIMATE:
        return DEFAULT_STAINS
    # The plane of the two largest OD directions holds both stains; their extreme angles in it are the stains.
    _, vectors = np.linalg.eigh(np.cov(od.T))
    plane = vectors[:, 1:3]
    if plane[:, 0].sum() < 0:
        plane[:, 0] *= -1
    if plane[:, 1].sum() < 0:
        plane[:, 1] *= -1
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [percentile, 100 - percentile])
    first = _unit(plane @ np.array([np.cos(low), np.sin(low)]))
    second = _unit(plane @ np.array([np.cos(high), np.sin(high)]))
    # Haematoxylin absorbs red most of the two (it is the bluer stain).
    h, e = (first, second) if first[0] > second[0] else (second, first)
    h, e = np.abs(h), np.abs(e)
    if h @ _unit(DEFAULT_HAEMATOXYLIN) < MIN_COSINE_TO_DEFAULT or e @ _unit(DEFAULT_EOSIN) < MIN_COSINE_TO_DEFAULT:
        return DEFAULT_STAINS
    return StainVectors(tuple(float(v) for v in h), tuple(float(v) for v in e), "estimated")


def slide_stain_vectors(thumbnail_path, tissue_mask: np.ndarray | None) -> StainVectors:
    """The slide's stain vectors from its thumbnail's tissue pixels (the default when it cannot be read)."""
    import cv2

    image = cv2.imread(str(thumbnail_path), cv2.IMREAD_COLOR)
    if image is None:
        return DEFAULT_STAINS
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    tissue = None
    if tissue_mask is not None and np.asarray(tissue_mask).size:
        tissue = cv2.resize(np.asarray(tissue_mask, np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return estimate_stain_vectors(rgb, tissue)
