"""Ragged nucleus outlines (offsets into vertices) as the closed, oriented rings vector formats want.

All of it is array arithmetic over a whole batch: a Python loop per cell would cost more than
the rest of an export together at a million cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

# A linear ring needs four positions (three distinct and the first again); outlines traced from
# one- or two-pixel masks have fewer, and repeating their last vertex keeps them a (degenerate)
# polygon rather than dropping a nucleus the cell table counts.
MIN_RING_VERTICES = 3


@dataclass(frozen=True)
class Rings:
    """Closed exterior rings, counter-clockwise in (x, y) with the first vertex repeated last."""

    offsets: np.ndarray  # int64 (N+1,)
    x: np.ndarray  # float64 (M,)
    y: np.ndarray  # float64 (M,)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def signed_areas(offsets: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shoelace area of each outline; positive when it runs counter-clockwise in (x, y)."""
    counts = np.diff(offsets)
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    # The next vertex of each vertex, wrapping to its own outline's first.
    following = np.arange(len(x)) + 1
    ends = offsets[1:] - 1
    following[ends[counts > 0]] = offsets[:-1][counts > 0]
    cross = x * y[following] - x[following] * y
    sums = np.add.reduceat(cross, offsets[:-1]) if len(cross) else np.zeros(len(counts))
    return np.where(counts > 0, 0.5 * sums, 0.0)


def closed_rings(offsets: np.ndarray, x: np.ndarray, y: np.ndarray) -> Rings:
    """Each outline padded to three vertices, turned counter-clockwise and closed.

    RFC 7946 asks for counter-clockwise exteriors; in slide pixels (y down) that is clockwise on
    screen, which no viewer minds. Requires every outline to have at least one vertex.
    """
    offsets = np.asarray(offsets, np.int64)
    counts = np.diff(offsets)
    padded = np.maximum(counts, MIN_RING_VERTICES)
    closed_counts = padded + 1
    closed_offsets = np.concatenate([[0], np.cumsum(closed_counts)]).astype(np.int64)
    owner = np.repeat(np.arange(len(counts)), closed_counts)
    position = np.arange(int(closed_offsets[-1])) - closed_offsets[:-1][owner]
    position[closed_offsets[1:] - 1] = 0  # the closing vertex is the first again
    step = np.minimum(position, counts[owner] - 1)
    flip = (signed_areas(offsets, x, y) < 0)[owner]
    step = np.where(flip, counts[owner] - 1 - step, step)
    source = offsets[:-1][owner] + step
    return Rings(closed_offsets, x[source].astype(np.float64), y[source].astype(np.float64))


def polygons(rings: Rings) -> np.ndarray:
    """Shapely polygons of the rings, built in one vectorised call."""
    owner = np.repeat(np.arange(len(rings.counts)), rings.counts)
    return shapely.polygons(shapely.linearrings(rings.x, rings.y, indices=owner))


def bounds(offsets: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """xmin, ymin, xmax, ymax of each outline (float64)."""
    starts = np.asarray(offsets[:-1], np.int64)
    if len(starts) == 0:
        return (np.zeros(0),) * 4
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    return (
        np.minimum.reduceat(x, starts),
        np.minimum.reduceat(y, starts),
        np.maximum.reduceat(x, starts),
        np.maximum.reduceat(y, starts),
    )
