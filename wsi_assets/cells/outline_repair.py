"""Traced outlines made valid polygons by OGC rules (simple, >= 3 distinct vertices, counter-clockwise).

A pixel-centre contour of a label walks a one-pixel-wide spur out and back, and passes twice
through the pixel where two lobes touch diagonally: a ring that touches or crosses itself, which
QuPath, shapely and JTS call invalid (one in twenty CMU-1 nuclei before this). A label of one or
two pixels, or a one-pixel-wide line, traces to fewer than three distinct points, no area at all.

The check runs over a whole table in one vectorised shapely call; only the few invalid outlines
are repaired, each on its own: `make_valid`, then the exterior of its largest polygonal part (the
spur or the smaller lobe goes), or, when nothing polygonal is left, the traced pixels themselves
as squares (a pixel-centre point or line buffered by half a pixel). Valid outlines keep their
vertices; every outline is turned counter-clockwise in (x, y) (positive shoelace area), which is
what RFC 7946 and the vector exports want.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Polygon
from shapely.geometry.polygon import orient

# Half a pixel: the buffer that turns the centres of traced pixels back into the pixels' squares.
HALF_PIXEL = 0.5
# The coarsest any export writes level-0 coordinates (GeoJSON, COCO, cells.csv: 1/100 px). An
# outline must stay valid once rounded so: a repaired ring's crossing points lie off the pixel
# grid, and rounding them alone can make a ring touch itself again.
EXPORT_DECIMALS = 2


def _signed_areas(offsets: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    following = np.arange(len(x)) + 1
    following[offsets[1:] - 1] = offsets[:-1]
    cross = x * y[following] - x[following] * y
    return 0.5 * np.add.reduceat(cross, offsets[:-1])


def _valid(offsets: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Whether each outline is valid as stored (float32) and as the exports round it."""
    return _valid_as_is(offsets, xy) & _valid_as_is(offsets, np.round(xy, EXPORT_DECIMALS))


def _valid_as_is(offsets: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Whether each outline (>= 1 vertex each) is a valid polygon as the exports will close it."""
    counts = np.diff(offsets)
    valid = np.zeros(len(counts), bool)
    enough = np.flatnonzero(counts >= 3)
    if enough.size:
        keep = np.repeat(counts >= 3, counts)
        owner = np.repeat(np.arange(enough.size), counts[enough])
        shapes = shapely.polygons(shapely.linearrings(xy[keep, 0], xy[keep, 1], indices=owner))
        valid[enough] = shapely.is_valid(shapes)
    return valid


def _largest_polygon(shape) -> Polygon | None:
    parts = [part for part in shapely.get_parts(shape) if not part.is_empty]
    polygonal = [
        q for p in parts for q in (shapely.get_parts(p) if p.geom_type == "MultiPolygon" else [p]) if q.geom_type == "Polygon"
    ]
    return max(polygonal, key=lambda p: p.area) if polygonal else None


def repaired_outline(points: np.ndarray) -> np.ndarray:
    """One outline's vertices (K, 2) as a valid, counter-clockwise polygon's exterior (not closed)."""
    points = np.asarray(points, np.float64)
    best = None
    if len(np.unique(points, axis=0)) >= 3:
        best = _largest_polygon(shapely.make_valid(Polygon(points)))
    if best is None or best.area <= 0:
        distinct = np.unique(points, axis=0)
        traced = MultiPoint(distinct) if len(distinct) == 1 else LineString(np.concatenate([points, points[:1]]))
        best = _largest_polygon(traced.buffer(HALF_PIXEL, cap_style="square", join_style="mitre"))
    ring = np.asarray(orient(best, 1.0).exterior.coords)[:-1]
    return ring


def _is_valid(ring: np.ndarray) -> bool:
    return bool(_valid(np.array([0, len(ring)]), ring.astype(np.float64))[0])


def _repaired_and_rounded(points: np.ndarray) -> np.ndarray:
    """A repaired ring on the export grid, in float32, valid both ways; else its convex hull."""
    ring = points
    for _ in range(2):  # rounding can undo a repair once; repairing the rounded ring settles it
        ring = np.round(repaired_outline(ring), EXPORT_DECIMALS).astype(np.float32)
        if _is_valid(ring):
            return ring
    hull = shapely.convex_hull(MultiPoint(np.asarray(points, np.float64)))
    source = (
        np.asarray(hull.exterior.coords)[:-1] if hull.geom_type == "Polygon" and hull.area > 0 else np.asarray(points, np.float64)
    )
    return np.round(repaired_outline(source), EXPORT_DECIMALS).astype(np.float32)


def valid_outlines(offsets: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(offsets, float32 vertices, how many outlines were repaired): every outline valid and counter-clockwise.

    `vertices` are (M, 2) x, y; every outline has at least one vertex.
    """
    offsets = np.asarray(offsets, np.int64)
    vertices = np.asarray(vertices, np.float32)
    counts = np.diff(offsets)
    if len(counts) == 0:
        return offsets, vertices, 0
    xy = vertices.astype(np.float64)
    bad = np.flatnonzero(~_valid(offsets, xy))
    # Counter-clockwise: a valid outline traced the other way round is read backwards.
    flip = _signed_areas(offsets, xy) < 0
    flip[bad] = False
    if flip.any():
        owner = np.repeat(np.arange(len(counts)), counts)
        position = np.arange(len(xy)) - offsets[:-1][owner]
        source = np.where(flip[owner], offsets[1:][owner] - 1 - position, np.arange(len(xy)))
        vertices = vertices[source]
    if bad.size == 0:
        return offsets, vertices, 0
    pieces = [vertices[offsets[i] : offsets[i + 1]] for i in range(len(counts))]
    for i in bad.tolist():
        pieces[i] = _repaired_and_rounded(pieces[i])
    new_counts = np.asarray([len(p) for p in pieces], np.int64)
    return np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int64), np.concatenate(pieces).astype(np.float32), int(bad.size)
