"""Cells grown from nuclei by a fixed distance, as QuPath's cell expansion does.

Each cell is its nucleus buffered by the distance, limited to the points nearer its own centroid
than any other (the Voronoi region, computed over every centroid of the slide, so cells do not
overlap across batches either) and to the slide, and always containing its nucleus.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely

from wsi_assets.cells.store import read_cell_columns

# slide_metadata.json sits beside the segmentation/ folder that holds the stored cell table.
SLIDE_METADATA = "slide_metadata.json"
QUAD_SEGMENTS = 4  # 16 vertices per full turn: round enough at nucleus scale, 4x smaller than the default


def cell_expansion_um(provenance: dict, override: float | None) -> float:
    """The expansion the writer was given, else the branch setting carried in provenance, else 0 (off)."""
    if override is not None:
        return float(override)
    settings = provenance.get("settings") or {}
    return float(settings.get("cell_expansion_um", 0.0) or 0.0)


def slide_size(cells_path: Path, provenance: dict) -> tuple[float, float] | None:
    """Level-0 width and height: from provenance if it has them, else the slide metadata of the set."""
    if "slide_width" in provenance and "slide_height" in provenance:
        return float(provenance["slide_width"]), float(provenance["slide_height"])
    try:
        metadata = json.loads((Path(cells_path).parent.parent / SLIDE_METADATA).read_text())
        return float(metadata["width"]), float(metadata["height"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class CellGrower:
    """Expanded cells batch by batch, with every centroid of the slide at hand (24 bytes a cell)."""

    def __init__(self, cells_path: Path, distance_px: float, size: tuple[float, float] | None):
        columns = read_cell_columns(cells_path, ["cell_id", "centroid_x", "centroid_y"])
        self.ids = columns["cell_id"]
        self.points = np.stack([columns["centroid_x"], columns["centroid_y"]], axis=1)
        self.distance = float(distance_px)
        self.size = size

    def _regions(self, ids: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """Voronoi regions of the batch's centroids among all centroids within reach; None if degenerate."""
        reach = 2 * self.distance + 1
        low, high = points.min(axis=0) - reach, points.max(axis=0) + reach
        near = np.all((self.points >= low) & (self.points <= high), axis=1) & ~np.isin(self.ids, ids)
        every = np.concatenate([points, self.points[near]])
        envelope = shapely.box(*(low - reach), *(high + reach))
        found = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(every), extend_to=envelope, ordered=True))
        # Coincident centroids share one region, and the order no longer says whose is whose.
        return found[: len(points)] if len(found) == len(every) else None

    def grow(self, ids: np.ndarray, points: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
        nuclei = np.where(shapely.is_valid(nuclei), nuclei, shapely.make_valid(nuclei))
        cells = shapely.buffer(nuclei, self.distance, quad_segs=QUAD_SEGMENTS)
        regions = self._regions(ids, points) if len(points) > 1 else None
        if regions is not None:
            cells = shapely.intersection(cells, regions)
        cells = shapely.union(cells, nuclei)
        if self.size is not None:
            cells = shapely.clip_by_rect(cells, 0.0, 0.0, *self.size)
        # Keep the polygonal parts only: clipping can leave slivers of lines at the slide edge.
        polygonal = shapely.get_type_id(cells) == shapely.GeometryType.POLYGON
        multi = shapely.get_type_id(cells) == shapely.GeometryType.MULTIPOLYGON
        cells = np.where(polygonal | multi, cells, nuclei)
        return shapely.orient_polygons(cells)
