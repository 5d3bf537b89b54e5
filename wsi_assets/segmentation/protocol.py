"""The interface every nucleus segmenter implements: RGB tiles at a known µm/px in, instance labels out."""

from __future__ import annotations

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


def check_tile_batch(tiles: np.ndarray) -> np.ndarray:
    """Validate a `segment_batch` input; returns it as a C-contiguous uint8 (B,H,W,3) array."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ValueError(f"tiles must be (B,H,W,3) RGB, got shape {tiles.shape}")
    if tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8, got {tiles.dtype}")
    return np.ascontiguousarray(tiles)
