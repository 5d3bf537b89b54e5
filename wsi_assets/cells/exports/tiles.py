"""Training-set tiles: the slide cut into a grid, each nucleus clipped to every tile it crosses.

Shared by the COCO and YOLO-seg exports. Units and rules:
- `tile_size` is in level-0 pixels; the grid starts at (0, 0) and tiles at the right and bottom
  edges are cut short by the slide. Images are read at TILE_LEVEL (level 0 by default), so an
  image pixel is `downsample` level-0 pixels and polygon coordinates are in image pixels.
- Only tiles that hold at least one nucleus part are emitted.
- A nucleus crossing a tile border is clipped to each tile (shapely `intersection`). When
  clipping splits it into several parts, the largest part is kept: one instance per nucleus per
  tile, as both COCO and YOLO-seg expect. Parts with under 3 distinct points, under
  MIN_PART_AREA image px², or under one pixel across (slivers along the border, which rasterise
  to an empty mask that training code rejects) are dropped.
- Polygon vertices are stored at nucleus boundary pixel centres (pixel i covers [i, i+1)), the
  convention COCO tooling rasterises with, so they are only shifted and scaled.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pyarrow.parquet as pq
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.polygon import orient

from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.store import iter_cells, read_cell_columns, read_cells_where
from wsi_assets.cells.table import polygon_area
from wsi_assets.core.branch_settings import DEFAULT_TILE_SIZE
from wsi_assets.slides.reader import open_slide, read_level_rgb

TILE_LEVEL = 0
MIN_PART_AREA = 1.0  # image px²: a border sliver, not a nucleus
JPEG_QUALITY = 90
NUCLEUS = "nucleus"


@dataclass
class Tile:
    x0: int  # level-0 origin
    y0: int
    width: int  # level-0 extent
    height: int
    image_width: int  # at the tile level
    image_height: int
    cell_ids: list[int]
    polygons: list[np.ndarray]  # (K, 2) float, image pixels, K >= 3
    classes: list[str]

    def name(self, stem: str) -> str:
        return f"{stem}_x{self.x0}_y{self.y0}"


def clipped_part(vertices: np.ndarray, clip: Polygon) -> Polygon | None:
    """The largest part of the polygon inside `clip`, or None when nothing usable is left."""
    shape = Polygon(vertices)
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    inside = shape.intersection(clip)
    pieces = shapely.get_parts(inside)
    # A collection (a polygon plus a line along the border) may itself hold a multipolygon.
    parts = [p for p in pieces if isinstance(p, Polygon)] + [q for p in pieces if isinstance(p, MultiPolygon) for q in p.geoms]
    parts = [part for part in parts if not part.is_empty]
    if not parts:
        return None
    # Counter-clockwise, as the stored outlines are: shapely's intersection may turn a ring round.
    return orient(max(parts, key=lambda part: part.area), 1.0)


def _max_extent(cells_path: Path) -> float:
    # How far any vertex lies from its centroid in y: the band of rows a tile row must read.
    extent = 0.0
    for _, nuclei, _ in iter_cells(cells_path):
        if len(nuclei):
            centroid_y = np.repeat(nuclei.centroid_y, nuclei.point_counts)
            extent = max(extent, float(np.abs(nuclei.vertices[:, 1] - centroid_y).max()))
    return math.ceil(extent) + 1


def cell_classes(cells_path: Path) -> dict[int, str] | None:
    """Each cell's class when the stored table has a class column, else None (one 'nucleus' category)."""
    if CLASS_COLUMN not in pq.ParquetFile(str(cells_path)).schema_arrow.names:
        return None
    columns = read_cell_columns(cells_path, ["cell_id", CLASS_COLUMN])
    return {int(i): NUCLEUS if c is None else str(c) for i, c in zip(columns["cell_id"], columns[CLASS_COLUMN])}


def class_names(classes: dict[int, str] | None) -> list[str]:
    """The training classes in index order: CLASS_NAMES (whichever occur, so every slide and batch
    numbers them alike), then any name outside the vocabulary, sorted; ['nucleus'] when unclassified."""
    if not classes:
        return [NUCLEUS]
    strangers = sorted(set(classes.values()) - set(CLASS_NAMES))
    return [*CLASS_NAMES, *strangers]


def iter_tiles(cells_path: Path, slide_width: int, slide_height: int, tile_size: int, downsample: float = 1.0) -> Iterator[Tile]:
    """Tiles holding at least one nucleus part, row by row, with each part clipped and in image pixels."""
    margin = _max_extent(cells_path)
    classes = cell_classes(cells_path)
    for y0 in range(0, slide_height, tile_size):
        y1 = min(y0 + tile_size, slide_height)
        by_column: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        band = [("centroid_y", ">=", float(y0 - margin)), ("centroid_y", "<", float(y1 + margin))]
        for ids, nuclei, _ in read_cells_where(cells_path, band):
            for i in range(len(nuclei)):
                vertices = nuclei.polygon(i).astype(np.float64)
                low, high = vertices.min(axis=0), vertices.max(axis=0)
                if high[1] <= y0 or low[1] >= y1:
                    continue
                first, last = max(0, int(low[0] // tile_size)), min(int(high[0] // tile_size), (slide_width - 1) // tile_size)
                for column in range(first, last + 1):
                    by_column[column].append((int(ids[i]), vertices))
        for column in sorted(by_column):
            tile = _tile(column * tile_size, y0, tile_size, slide_width, y1, by_column[column], downsample, classes)
            if tile.cell_ids:
                yield tile


def _tile(x0, y0, tile_size, slide_width, y1, cells, downsample, classes) -> Tile:
    x1 = min(x0 + tile_size, slide_width)
    clip = box(x0, y0, x1, y1)
    tile = Tile(x0, y0, x1 - x0, y1 - y0, math.ceil((x1 - x0) / downsample), math.ceil((y1 - y0) / downsample), [], [], [])
    for cell_id, vertices in cells:
        if (
            vertices[:, 0].min() >= x0
            and vertices[:, 0].max() <= x1
            and vertices[:, 1].min() >= y0
            and vertices[:, 1].max() <= y1
        ):
            # Wholly inside (most nuclei): the stored outline as it is, without a geometry library call.
            points, area = vertices, polygon_area(vertices)
        else:
            part = clipped_part(vertices, clip)
            if part is None:
                continue
            points, area = np.asarray(part.exterior.coords)[:-1], part.area
        points = (points - (x0, y0)) / downsample
        if len(np.unique(points.round(3), axis=0)) < 3 or area / downsample**2 < MIN_PART_AREA:
            continue
        if (np.ptp(points, axis=0) < 1.0).any():
            continue
        tile.cell_ids.append(cell_id)
        tile.polygons.append(points)
        tile.classes.append(classes.get(cell_id, NUCLEUS) if classes else NUCLEUS)
    return tile


class TileImages:
    """Reads tile images from the slide, once per tile, at TILE_LEVEL."""

    def __init__(self, slide_path: Path, level: int = TILE_LEVEL):
        self._slide = open_slide(Path(slide_path))
        self.level = min(level, self._slide.level_count - 1)
        self.downsample = float(self._slide.level_downsamples[self.level])
        self.dimensions = self._slide.dimensions

    def jpeg(self, tile: Tile) -> bytes:
        rgb = read_level_rgb(self._slide, tile.x0, tile.y0, self.level, tile.image_width, tile.image_height)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"tile {tile.x0},{tile.y0} could not be encoded as JPEG")
        return encoded.tobytes()

    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> "TileImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tile_size_of(provenance: dict) -> int:
    return int((provenance.get("settings") or {}).get("tile_size") or DEFAULT_TILE_SIZE)


def slide_stem(provenance: dict) -> str:
    return Path(provenance["slide_file"]).stem
