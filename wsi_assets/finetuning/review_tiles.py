"""Training pairs from a reviewed slide: tiles read at the model's µm/px, with the reviewer's cells rasterised as instance maps.

A reviewed region (a QuPath annotation) is used by its bounding box, cut into tiles of at most
`tile_px` model pixels; with no region, the box around all the reviewer's cells is. Inside a
region the reviewer's cells are the truth (cell_review's rule), so a region drawn as a box is
exact; for a freehand region the corners of its box count as reviewed too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import shapely

from wsi_assets.reviews.review_geojson import ReviewedCells
from wsi_assets.slides.reader import read_region_at_downsample

TILE_PX = 256  # model pixels: a few hundred cells a tile at 0.5 µm/px
MAX_TILES = 400  # per slide: about 80 MB of pixels at 256 px; a whole-slide review is sampled evenly
HELD_OUT_EVERY = 3  # every third tile (in reading order) scores the models and is never trained on


class TooFewReviewedTiles(ValueError):
    """The reviews give too little to both fine-tune on and score on."""


@dataclass
class ReviewedTile:
    slide: str
    box: tuple[int, int, int, int]  # level-0 x0, y0, x1, y1
    rgb: np.ndarray  # uint8 (H,W,3) at the model's µm/px
    labels: np.ndarray  # int32 (H,W) instance map of the reviewer's cells
    cells: int
    classes: dict = field(default_factory=dict)  # label -> the reviewer's class, where given
    # The slide file and its µm/px, where the tile was read from one: the models are then scored on
    # it as process_slide segments that slide (slide_grid.py), not on the tile alone.
    source: Path | None = None
    slide_mpp: float = 0.0
    polygons: list = field(default_factory=list)  # the reviewer's cells it counts (labels 1..cells), level-0 px


def _tile_boxes(box, tile_level0: float) -> list[tuple[int, int, int, int]]:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    xs = np.linspace(x0, x1, max(1, int(np.ceil((x1 - x0) / tile_level0))) + 1).round().astype(int)
    ys = np.linspace(y0, y1, max(1, int(np.ceil((y1 - y0) / tile_level0))) + 1).round().astype(int)
    return [(int(a), int(b), int(c), int(d)) for b, d in zip(ys[:-1], ys[1:]) for a, c in zip(xs[:-1], xs[1:]) if c > a and d > b]


def rasterise(polygons: list, box: tuple[float, float, float, float], downsample: float, shape: tuple[int, int]) -> np.ndarray:
    """An instance map of `polygons` (level-0 px) over `box`, at `downsample` level-0 px per pixel; later cells win overlaps.

    Outlines run through boundary pixel centres: pixel (c, r) covers level-0 [x0 + c*d, x0 + (c+1)*d),
    so its centre is x0 + (c + 0.5)*d. Without the half pixel, rounding (half to even) moved every
    vertex of the slide's own outlines by half a pixel, which alone cost 0.1 of the F1/AJI/PQ mean.
    """
    labels = np.zeros(shape, np.int32)
    x0, y0 = box[0], box[1]
    for index, polygon in enumerate(polygons, start=1):
        parts = [part for part in shapely.get_parts(polygon) if isinstance(part, shapely.Polygon)]
        rings = [np.round((np.asarray(part.exterior.coords) - (x0, y0)) / downsample - 0.5).astype(np.int32) for part in parts]
        cv2.fillPoly(labels, rings, int(index))
    return labels


def reviewed_tiles(
    slide,
    name: str,
    reviewer: ReviewedCells,
    slide_mpp: float,
    model_mpp: float,
    tile_px: int = TILE_PX,
    max_tiles: int = MAX_TILES,
    source: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReviewedTile]:
    """The reviewed area of one slide as tiles with cells at the model's µm/px, in reading order (at most `max_tiles`).

    A tile counts the cells whose centroid it holds; its label map also holds the parts of
    neighbouring cells that reach into it, as a model's output on it does. `progress(done, total)`
    is called after each tile is read.
    """
    downsample = model_mpp / slide_mpp
    if reviewer.regions:
        boxes = [region.bounds for region in reviewer.regions]
    elif reviewer.polygons:
        boxes = [tuple(shapely.total_bounds(np.asarray(reviewer.polygons, dtype=object)))]
    else:
        return []
    width, height = slide.dimensions
    centroids = reviewer.centroids
    boxes = [
        box
        for region_box in boxes
        for box in _tile_boxes(
            (max(0.0, region_box[0]), max(0.0, region_box[1]), min(width, region_box[2]), min(height, region_box[3])),
            tile_px * downsample,
        )
    ]
    members = [
        np.flatnonzero((centroids[:, 0] >= x0) & (centroids[:, 0] < x1) & (centroids[:, 1] >= y0) & (centroids[:, 1] < y1))
        for x0, y0, x1, y1 in boxes
    ]
    # Only tiles with cells are used; a whole-slide review is thinned evenly so memory stays bounded.
    chosen = [i for i, inside in enumerate(members) if len(inside)]
    if len(chosen) > max_tiles:
        chosen = [chosen[int(k)] for k in np.linspace(0, len(chosen) - 1, max_tiles).round()]
    tree = shapely.STRtree(reviewer.polygons)
    tiles = []
    for done, i in enumerate(chosen, start=1):
        box, inside = boxes[i], members[i].tolist()
        x0, y0, x1, y1 = box
        rgb = read_region_at_downsample(slide, x0, y0, x1 - x0, y1 - y0, downsample)
        # Cells cut by the tile's edge are labelled too: else the model's halves of them would count
        # as false nuclei, and fine-tuning would teach it that a nucleus at a crop's edge is background.
        reaching = sorted(set(tree.query(shapely.box(x0, y0, x1, y1), predicate="intersects").tolist()) - set(inside))
        polygons = [reviewer.polygons[j] for j in inside]
        labels = rasterise(polygons + [reviewer.polygons[j] for j in reaching], box, downsample, rgb.shape[:2])
        classes = {
            label: reviewer.classes[j]
            for label, j in enumerate(inside, start=1)
            if j < len(reviewer.classes) and reviewer.classes[j]
        }
        tiles.append(ReviewedTile(name, box, rgb, labels, len(inside), classes, source, slide_mpp, polygons))
        if progress is not None:
            progress(done, len(chosen))
    return tiles


def split_held_out(tiles: list[ReviewedTile], every: int = HELD_OUT_EVERY) -> tuple[list[ReviewedTile], list[ReviewedTile]]:
    """(fine-tuning tiles, held-out tiles): every `every`-th tile with cells is held out, so both sides see each slide."""
    with_cells = [t for t in tiles if t.cells > 0]
    if len(with_cells) < 2:
        raise TooFewReviewedTiles(
            f"the reviews give {len(with_cells)} tile(s) with cells; fine-tuning needs at least 2 "
            f"(one to learn from, one held out to score on): review a larger region or more cells"
        )
    held = [t for i, t in enumerate(with_cells) if i % every == every - 1] or [with_cells[-1]]
    kept = [t for t in with_cells if not any(t is h for h in held)]
    return kept, held
