"""The interface every nucleus segmenter implements, and the default one."""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Segmenter(Protocol):
    """Turns a batch of RGB tiles at `mpp` µm/px into per-tile nucleus instance labels."""

    name: str
    version: str
    mpp: float
    device: str

    def segment_batch(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 (B,H,W,3) RGB at `self.mpp` -> int32 (B,H,W), 0 background, 1..n per tile."""
        ...


@lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    """The segmenter used when none is configured (shared instance: it holds no per-call state)."""
    from wsi_assets.classical_segmenter import ClassicalSegmenter

    return ClassicalSegmenter()


def check_tile_batch(tiles: np.ndarray) -> np.ndarray:
    """Validate a `segment_batch` input; returns it as a C-contiguous uint8 (B,H,W,3) array."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ValueError(f"tiles must be (B,H,W,3) RGB, got shape {tiles.shape}")
    if tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8, got {tiles.dtype}")
    return np.ascontiguousarray(tiles)
