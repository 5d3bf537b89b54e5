"""Per-image H&E stain normalisation (Macenko et al. 2009's amount scaling) for the nucleus classifier network.

CoNSeP's classes are lopsided by tile and so by stain (over half the training lymphocytes come
from one dark tile): a network shown raw pixels learns the tile's stain. Each image is therefore
brought to fixed target stains before its nuclei are cropped: each pixel's haematoxylin and eosin
amounts (colour deconvolution with the given stain vectors) are scaled so that their 99th
percentile over the image's tissue pixels meets a fixed target, and the pixel is rebuilt from the
target vectors. The vectors are the default ones unless the caller has a slide's own
(`slide_stain_vectors`, from its whole thumbnail): Macenko's vector estimate on one 64 µm tile
swings between crops of the same tissue (and falls back to the default on many), which would
colour the same tissue differently crop by crop. The statistics are the whole image's (a tile, or
a slide's), never one nucleus crop's, so a nucleus's darkness relative to its neighbours is kept. Training crops and inference go through the same `normalise_stains`; STAIN_NORMALISATION
names the recipe in crop caches, checkpoints and model cards so that they are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsi_assets.cells.stain_vectors import DEFAULT_STAINS, MAX_INTENSITY, StainVectors, optical_density

STAIN_NORMALISATION = "hed-p99-v1"
PERCENTILE = 99.0
# The median over CoNSeP's training crops (at 0.5 µm/px) of each image's 99th percentile
# haematoxylin and eosin amounts (log10 OD): normalised images look like a typical CoNSeP crop.
TARGET_MAX_AMOUNTS = (0.57, 0.28)
TARGET_STAINS = DEFAULT_STAINS
# Background (glass) is near white in every channel; pale pink stroma absorbs in at least one.
TISSUE_OD = 0.1
# Fewer tissue pixels than this give no reliable percentile: the amounts are then left unscaled.
MIN_TISSUE_PIXELS = 500


@dataclass(frozen=True)
class StainStatistics:
    """An image's stain vectors and the 99th percentile of its H and E amounts on tissue."""

    stains: StainVectors
    max_amounts: tuple[float, float]


def stain_statistics(rgb: np.ndarray, tissue: np.ndarray | None = None, stains: StainVectors = DEFAULT_STAINS) -> StainStatistics:
    """The statistics `normalise_stains` maps to the target, from the image's tissue pixels."""
    rgb = np.asarray(rgb)
    od = optical_density(rgb).reshape(-1, 3)
    chosen = np.any(od > TISSUE_OD, axis=1)
    if tissue is not None:
        chosen &= np.asarray(tissue, bool).reshape(-1)
    if chosen.sum() < MIN_TISSUE_PIXELS:
        return StainStatistics(stains, TARGET_MAX_AMOUNTS)
    amounts = od[chosen] @ np.linalg.inv(stains.matrix()).astype(np.float32)
    top = np.percentile(amounts[:, :2], PERCENTILE, axis=0)
    # a stain the image barely shows is not blown up to the target's strength
    top = np.maximum(top, 0.25 * np.asarray(TARGET_MAX_AMOUNTS))
    return StainStatistics(stains, (float(top[0]), float(top[1])))


def normalise_stains(rgb: np.ndarray, statistics: StainStatistics | None = None, tissue: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB of the same shape with the target stains; `statistics` default to the image's own."""
    rgb = np.asarray(rgb)
    if statistics is None:
        statistics = stain_statistics(rgb, tissue)
    amounts = optical_density(rgb).reshape(-1, 3) @ np.linalg.inv(statistics.stains.matrix()).astype(np.float32)
    scale = (np.asarray(TARGET_MAX_AMOUNTS) / np.asarray(statistics.max_amounts)).astype(np.float32)
    od = (amounts[:, :2] * scale) @ TARGET_STAINS.matrix()[:2].astype(np.float32)
    out = MAX_INTENSITY * np.power(np.float32(10.0), -od)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(rgb.shape)


def normaliser(recipe: str | None):
    """The image transform a network's inputs were trained with: `normalise_stains`, or None for raw pixels."""
    if not recipe:
        return None
    if recipe != STAIN_NORMALISATION:
        raise ValueError(
            f"stain normalisation {recipe!r} is not known to this version (it knows {STAIN_NORMALISATION!r}): update wsi-assets"
        )
    return normalise_stains
