"""Reviewed tiles seen as process_slide sees them: the slide's own tile grid, each grid tile segmented whole, each nucleus from the tile that owns it.

A U-Net's output at a place depends on where that place sits in the image it is given (the
phase of its 16-px pooling grid, the resampling to the model's µm/px, the context around it).
On CMU-1-Small-Region the shipped model run on 256-px review tiles disagreed with its own slide
run on a third of the nuclei (F1/AJI/PQ mean 0.64 against the slide's own export); on the
slide's grid it agrees (0.98). So the models are scored here on the grid process_slide uses, and
the reviewer's cells are measured (shape, stain, embedding) in the grid tile that owns them, as
the slide's nuclei are: a classifier is then judged on the features it meets in a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import shapely

from wsi_assets.cells.measurements import NucleusMeasurer
from wsi_assets.cells.stain_vectors import StainVectors
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.finetuning.review_tiles import ReviewedTile, rasterise
from wsi_assets.cells.embeddings import compact, embeddings_at
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.slide import TilingSettings, owned_nuclei
from wsi_assets.slides.reader import open_slide, read_region_at_downsample
from wsi_assets.slides.tiling import Tile, TileGrid, make_tile_grid


@dataclass
class GridTile:
    """One tile of a slide's grid, read and (where a segmenter is given) segmented."""

    grid: TileGrid
    tile: Tile
    rgb: np.ndarray  # (S,S,3) at the model's µm/px, S = grid.tile_pixels
    labels: np.ndarray | None
    maps: object | None  # EmbeddingMaps, where the segmenter gives them
    reviewed: list[ReviewedTile]  # the reviewed tiles whose box meets this tile's core


def _read(slide, tile: Tile, grid: TileGrid) -> np.ndarray:
    # As segment_slide reads a tile: the box at the grid's scale, then exactly tile_pixels square.
    rgb = read_region_at_downsample(slide, tile.read_x, tile.read_y, tile.read_w, tile.read_h, grid.scale)
    side = grid.tile_pixels
    return rgb if rgb.shape[:2] == (side, side) else cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)


def grid_tiles(
    tiles: list[ReviewedTile],
    model_mpp: float,
    tiling: TilingSettings,
    segmenter=None,
    progress: Callable[[int, int], None] | None = None,
    with_embedding: bool = False,
) -> Iterator[GridTile]:
    """The grid tiles whose core meets a reviewed tile's box (or lies within a margin of it, where
    nuclei reaching into the box are owned), slide by slide in grid order, each read once (and
    segmented, with its embedding maps when asked for, where a segmenter is given)."""
    by_slide: dict = {}
    for tile in tiles:
        by_slide.setdefault((tile.source, tile.slide_mpp), []).append(tile)
    plans = []
    for (source, slide_mpp), reviewed in by_slide.items():
        with open_slide(source) as slide:
            width, height = slide.dimensions
        grid = make_tile_grid(width, height, slide_mpp, model_mpp, tiling.core, tiling.margin)
        step, reach = grid.core * grid.scale, grid.margin * grid.scale
        wanted: dict[tuple[int, int], list[ReviewedTile]] = {}
        for tile in reviewed:
            x0, y0, x1, y1 = tile.box
            for row in range(max(0, int((y0 - reach) // step)), min(grid.rows, int((y1 + reach) // step) + 1)):
                for col in range(max(0, int((x0 - reach) // step)), min(grid.cols, int((x1 + reach) // step) + 1)):
                    wanted.setdefault((row, col), []).append(tile)
        plans.append((source, grid, sorted(wanted.items())))
    total, done = sum(len(p[2]) for p in plans), 0
    for source, grid, wanted in plans:
        with open_slide(source) as slide:
            for (row, col), reviewed in wanted:
                tile = grid.tile(row, col)
                rgb = _read(slide, tile, grid)
                labels = maps = None
                if segmenter is not None and with_embedding:
                    found, found_maps = segment_with_embeddings(segmenter, rgb[np.newaxis])
                    labels = np.asarray(found[0]).astype(np.int32)
                    maps = compact(found_maps[0]) if found_maps is not None else None
                elif segmenter is not None:
                    labels = np.asarray(segmenter.segment_batch(rgb[np.newaxis]))[0].astype(np.int32)
                done += 1
                yield GridTile(grid, tile, rgb, labels, maps, reviewed)
                if progress is not None:
                    progress(done, total)


def model_labels(
    segmenter, tiles: list[ReviewedTile], tiling: TilingSettings = TilingSettings(), progress=None
) -> list[np.ndarray]:
    """The model's instance map over each reviewed tile (in the order given) as the slide run finds
    its nuclei: owned nuclei of the grid's tiles, rasterised as the reviewer's cells are."""
    polygons: dict[int, list] = {id(t): [] for t in tiles}
    for grid_tile in grid_tiles(tiles, segmenter.mpp, tiling, segmenter, progress):
        nuclei = owned_nuclei(grid_tile.labels, grid_tile.tile, grid_tile.grid)
        if not len(nuclei):
            continue
        outlines = shapely.polygons(
            shapely.linearrings(
                nuclei.vertices[:, 0], nuclei.vertices[:, 1], indices=np.repeat(np.arange(len(nuclei)), nuclei.point_counts)
            )
        )
        tree = shapely.STRtree(outlines)
        for reviewed in grid_tile.reviewed:
            polygons[id(reviewed)] += [
                outlines[j] for j in sorted(tree.query(shapely.box(*reviewed.box), predicate="intersects").tolist())
            ]
    return [rasterise(polygons[id(t)], t.box, segmenter.mpp / t.slide_mpp, t.labels.shape) for t in tiles]


@dataclass
class CellFeatures:
    """Per reviewed cell with a class: its measurements (and embedding) as a slide run computes them."""

    columns: dict[str, np.ndarray]
    embeddings: np.ndarray | None
    classes: np.ndarray
    tiles: np.ndarray  # "<slide>:<box>" of the reviewed tile holding each cell


def reviewed_cell_features(
    tiles: list[ReviewedTile],
    model_mpp: float,
    stains_of: Callable[[ReviewedTile], StainVectors],
    segmenter=None,
    tiling: TilingSettings = TilingSettings(),
    progress=None,
) -> CellFeatures:
    """The reviewer's classified cells measured in the grid tile that owns each (its centroid in the
    core, not cut by the tile's edge), with the slide's stain vectors and, with a `segmenter` that
    gives one, the embedding read at its centroid from that tile's maps."""
    columns: dict[str, list] = {}
    embeddings, classes, sources = [], [], []
    for grid_tile in grid_tiles([t for t in tiles if t.classes], model_mpp, tiling, segmenter, progress, with_embedding=True):
        grid, tile = grid_tile.grid, grid_tile.tile
        cells = [(polygon, t.classes.get(k), t) for t in grid_tile.reviewed for k, polygon in enumerate(t.polygons, start=1)]
        if not cells:
            continue
        side = grid.tile_pixels
        labels = rasterise([c[0] for c in cells], (tile.read_x, tile.read_y), grid.scale, (side, side))
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        wanted = np.zeros(len(cells) + 1, bool)
        wanted[[k for k, c in enumerate(cells, start=1) if c[1]]] = True

        def keep(ids, x, y):
            return wanted[ids] & ~np.isin(ids, edge) & tile.owns(x, y)

        measurer = NucleusMeasurer(model_mpp, stains_of(grid_tile.reviewed[0]))
        found = nuclei_from_labels(
            labels,
            tile.read_x,
            tile.read_y,
            grid.scale,
            grid.scale,
            keep=keep,
            measure=lambda ids, outlines: measurer(labels, grid_tile.rgb, ids, outlines),
            with_ids=True,
        )
        if not len(found):
            continue
        ids = found.columns.pop("label_id")
        found.columns["area_um2"] = found.area_pixels * (model_mpp / grid.scale) ** 2
        for name, values in found.columns.items():
            columns.setdefault(name, []).append(values)
        if grid_tile.maps is not None:
            embeddings.append(
                embeddings_at(
                    grid_tile.maps, (found.centroid_x - tile.read_x) / grid.scale, (found.centroid_y - tile.read_y) / grid.scale
                )
            )
        classes += [cells[i - 1][1] for i in ids.tolist()]
        sources += [f"{cells[i - 1][2].slide}:{cells[i - 1][2].box}" for i in ids.tolist()]
    return CellFeatures(
        {name: np.concatenate(parts) for name, parts in columns.items()},
        np.concatenate(embeddings) if embeddings else None,
        np.asarray(classes, object),
        np.asarray(sources, object),
    )
