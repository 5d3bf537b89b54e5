"""Dropping a nucleus that a neighbouring tile already reported.

Ownership by centroid is exact only when both tiles outline a nucleus identically. A segmenter
that looks at context (adaptive thresholds, a network's receptive field) can outline a border
nucleus slightly differently in each tile, moving its centroid across the core boundary. So
nuclei near a core edge are compared with those the already-written neighbours kept there.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsi_assets.cells.table import NucleusTable
from wsi_assets.slides.tiling import Tile


def same_nucleus(
    polygon_a: np.ndarray, centroid_a: tuple[float, float], polygon_b: np.ndarray, centroid_b: tuple[float, float]
) -> bool:
    """Two outlines of one nucleus: either centroid lies inside the other outline."""
    inside_b = cv2.pointPolygonTest(polygon_b.reshape(-1, 1, 2), (float(centroid_a[0]), float(centroid_a[1])), False) >= 0
    return inside_b or cv2.pointPolygonTest(polygon_a.reshape(-1, 1, 2), (float(centroid_b[0]), float(centroid_b[1])), False) >= 0


def _near_core_edge(nuclei: NucleusTable, tile: Tile, distance: float) -> np.ndarray:
    x, y = nuclei.centroid_x, nuclei.centroid_y
    return (
        (x - tile.core_x0 < distance)
        | (tile.core_x1 - x < distance)
        | (y - tile.core_y0 < distance)
        | (tile.core_y1 - y < distance)
    )


class BorderDeduplicator:
    """Remembers the border nuclei of recent tiles; tiles must arrive in row-major order."""

    def __init__(self, border_distance: float):
        self.border_distance = border_distance
        self._border: dict[tuple[int, int], NucleusTable] = {}
        self.dropped = 0

    def _neighbours_written(self, tile: Tile) -> list[NucleusTable]:
        keys = [(tile.row, tile.col - 1), (tile.row - 1, tile.col - 1), (tile.row - 1, tile.col), (tile.row - 1, tile.col + 1)]
        return [self._border[k] for k in keys if k in self._border]

    def filter(self, tile: Tile, nuclei: NucleusTable) -> NucleusTable:
        near = _near_core_edge(nuclei, tile, self.border_distance)
        keep = np.ones(len(nuclei), bool)
        neighbours = [n for n in self._neighbours_written(tile) if len(n)]
        if neighbours and near.any():
            others = NucleusTable.concatenate(neighbours)
            for i in np.flatnonzero(near):
                close = (
                    np.hypot(others.centroid_x - nuclei.centroid_x[i], others.centroid_y - nuclei.centroid_y[i])
                    < self.border_distance
                )
                for j in np.flatnonzero(close):
                    if same_nucleus(
                        nuclei.polygon(i),
                        (nuclei.centroid_x[i], nuclei.centroid_y[i]),
                        others.polygon(j),
                        (others.centroid_x[j], others.centroid_y[j]),
                    ):
                        keep[i] = False
                        break
        kept = nuclei.select(keep)
        self.dropped += int((~keep).sum())
        self._border[(tile.row, tile.col)] = kept.select(_near_core_edge(kept, tile, self.border_distance))
        # Only the previous row and this one can still neighbour a tile to come.
        for key in [k for k in self._border if k[0] < tile.row - 1]:
            del self._border[key]
        return kept
