"""Segmenting every nucleus of a slide: tiles over tissue, read ahead in threads, results streamed to disk."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import openslide

from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, NucleusMeasurer
from wsi_assets.cells.nucleus_typer import TypingMeasurer
from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import NucleusTable, nuclei_from_labels
from wsi_assets.core.memory import return_large_buffers_to_the_system
from wsi_assets.core.progress import Progress
from wsi_assets.segmentation.border_dedup import BorderDeduplicator
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, EMBEDDING_KEY, EmbeddingMaps, compact, embeddings_at
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.slides.reader import open_slide, read_region_at_downsample
from wsi_assets.slides.tiling import Tile, TileGrid, make_tile_grid
from wsi_assets.slides.tissue import TissueMask

OPENSLIDE_CACHE_BYTES = 64 * 1024 * 1024  # bounded so many read threads do not grow memory
# What measures each tile's owned nuclei: the measurements, plus the classifier network's probabilities for a `classifier: cnn` branch.
Measurer = NucleusMeasurer | TypingMeasurer


@dataclass(frozen=True)
class TilingSettings:
    core: int = 1024  # model px each tile owns
    margin: int = 64  # model px of context on each side; larger than any nucleus
    border_um: float = 12.0  # nuclei this close to a core edge are checked against neighbour tiles
    batch_size: int = 4
    read_threads: int = 2
    postprocess_threads: int = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class SegmentationSummary:
    cells: int
    border_duplicates_dropped: int
    tiles: int
    tiles_total_grid: int
    seconds: float
    tissue_mm2: float
    mpp_model: float
    segmenter: str
    segmenter_version: str
    device: str

    @property
    def mm2_per_s(self) -> float:
        return self.tissue_mm2 / self.seconds if self.seconds > 0 else 0.0


def owned_nuclei(
    labels: np.ndarray,
    tile: Tile,
    grid: TileGrid,
    rgb: np.ndarray | None = None,
    measurer: Measurer | None = None,
    embedding_maps: EmbeddingMaps | None = None,
) -> NucleusTable:
    """Nuclei of one tile's label map that this tile owns: centroid in its core, not cut by its edge.

    With `embedding_maps`, each nucleus's embedding is read at its centroid (column EMBEDDING_COLUMN).
    """
    side = labels.shape[0]
    scale_x = tile.read_w / labels.shape[1]
    scale_y = tile.read_h / side
    # A nucleus touching the read edge may be cut; the margin is wider than a nucleus, so the
    # tile whose core holds its centroid sees it whole.
    # Only the four border lines are read for that, and the owner is decided from centroids
    # before any outline is traced: nuclei left out cost no contour.
    edge_labels = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])

    def keep(ids: np.ndarray, centroid_x: np.ndarray, centroid_y: np.ndarray) -> np.ndarray:
        return ~np.isin(ids, edge_labels) & tile.owns(centroid_x, centroid_y)

    measure = None if measurer is None else (lambda ids, outlines: measurer(labels, rgb, ids, outlines))
    nuclei = nuclei_from_labels(labels, tile.read_x, tile.read_y, scale_x, scale_y, keep=keep, measure=measure)
    if embedding_maps is not None and len(nuclei):
        # The table's level-0 centroids, back in this label map's pixels (the inverse of nuclei_from_labels' mapping).
        x = (nuclei.centroid_x - tile.read_x) / scale_x
        y = (nuclei.centroid_y - tile.read_y) / scale_y
        nuclei.columns[EMBEDDING_COLUMN] = embeddings_at(embedding_maps, x, y)
    return nuclei


def _finished_and_owned(finish: Callable, tile: Tile, grid: TileGrid, rgb: np.ndarray, measurer: Measurer | None) -> NucleusTable:
    """A tile the segmenter left unfinished (`segment_batch_deferred`): its labels, then its owned nuclei."""
    labels, maps = finish()
    return owned_nuclei(labels, tile, grid, rgb, measurer, compact(maps) if maps is not None else None)


def _read_tile(slide: openslide.OpenSlide, tile: Tile, grid: TileGrid) -> np.ndarray:
    rgb = read_region_at_downsample(slide, tile.read_x, tile.read_y, tile.read_w, tile.read_h, grid.scale)
    side = grid.tile_pixels
    if rgb.shape[:2] != (side, side):
        rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    return rgb


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def segment_slide(
    slide_path: Path,
    slide_mpp: float,
    tissue: TissueMask | None,
    segmenter: Segmenter,
    cells_path: Path,
    settings: TilingSettings = TilingSettings(),
    on_progress: Callable[[Progress], None] | None = None,
    store_metadata: dict[str, str] | None = None,
    measurer: Measurer | None = None,
) -> SegmentationSummary:
    """Segment the tissue of a slide and write every owned nucleus to `cells_path` (Parquet).

    With a `measurer`, each nucleus's measurements are computed in the same per-tile step; so is
    its embedding, where the segmenter gives one (its identity goes into the table's metadata).
    """
    return_large_buffers_to_the_system()
    started = time.perf_counter()
    with open_slide(slide_path) as slide:
        slide.set_cache(openslide.OpenSlideCache(OPENSLIDE_CACHE_BYTES))
        width, height = slide.dimensions
        grid = make_tile_grid(width, height, slide_mpp, segmenter.mpp, settings.core, settings.margin)
        tiles = grid.tissue_tiles(tissue)
        batches = list(_batches(tiles, settings.batch_size))
        embedding = getattr(segmenter, "embedding", None)
        metadata = {**(store_metadata or {}), **({EMBEDDING_KEY: json.dumps(embedding)} if embedding else {})}
        columns: tuple[str, ...] = () if measurer is None else MEASUREMENT_COLUMNS
        if isinstance(measurer, TypingMeasurer):
            columns, metadata = measurer.columns, {**metadata, **measurer.store_metadata()}
        with (
            ThreadPoolExecutor(settings.read_threads, thread_name_prefix="read") as readers,
            ThreadPoolExecutor(settings.postprocess_threads, thread_name_prefix="post") as postprocessors,
            CellStoreWriter(cells_path, metadata, columns, embedding["width"] if embedding else 0) as writer,
        ):
            # Reads run ahead by a bounded number of batches so memory stays flat.
            read_ahead: deque = deque()
            next_batch = 0

            def refill() -> None:
                nonlocal next_batch
                while next_batch < len(batches) and len(read_ahead) < 2 + settings.read_threads:
                    batch = batches[next_batch]
                    read_ahead.append((batch, [readers.submit(_read_tile, slide, t, grid) for t in batch]))
                    next_batch += 1

            refill()
            deduplicator = BorderDeduplicator(settings.border_um / slide_mpp)
            done = 0

            def write(batch: list[Tile], owned: list) -> None:
                # Tiles are written in grid order, so border deduplication sees the same
                # neighbours whatever the thread timing: the output is deterministic.
                nonlocal done
                for tile, future in zip(batch, owned):
                    writer.append(deduplicator.filter(tile, future.result()), tile.row, tile.col)
                    done += 1
                    if on_progress:
                        on_progress(Progress(done, len(tiles), writer.cells_written, time.perf_counter() - started))

            # Post-processing of one batch overlaps the segmentation of the next. A segmenter that
            # can leave each tile's finishing (instances from the network's maps) to the caller has
            # it done there too, so the network starts on the next tile at once.
            deferred = getattr(segmenter, "segment_batch_deferred", None)
            previous: tuple[list[Tile], list] | None = None
            while read_ahead:
                batch, futures = read_ahead.popleft()
                refill()
                images = np.stack([f.result() for f in futures])
                if deferred is not None:
                    owned = [
                        postprocessors.submit(_finished_and_owned, finish, tile, grid, tile_rgb, measurer)
                        for finish, tile, tile_rgb in zip(deferred(images, with_embedding=embedding is not None), batch, images)
                    ]
                else:
                    labels, maps = segment_with_embeddings(segmenter, images)
                    # float16 halves what waits for post-processing (~16 MB a 1152² tile) and is what is stored.
                    maps = [compact(tile_maps) for tile_maps in maps] if maps is not None else [None] * len(batch)
                    owned = [
                        postprocessors.submit(owned_nuclei, tile_labels, tile, grid, tile_rgb, measurer, tile_maps)
                        for tile_labels, tile, tile_rgb, tile_maps in zip(labels, batch, images, maps)
                    ]
                    del labels, maps
                del images
                if previous is not None:
                    write(*previous)
                previous = (batch, owned)
            if previous is not None:
                write(*previous)
            cells = writer.cells_written
    # The model stays loaded for the next slide, but its per-tile buffers are not needed by the
    # measuring and export steps that follow in the same process.
    release = getattr(segmenter, "release_working_memory", None)
    if release is not None:
        release()
    return SegmentationSummary(
        cells=cells,
        border_duplicates_dropped=deduplicator.dropped,
        tiles=len(tiles),
        tiles_total_grid=grid.rows * grid.cols,
        seconds=time.perf_counter() - started,
        tissue_mm2=tissue.area_mm2 if tissue is not None else width * height * (slide_mpp / 1000) ** 2,
        mpp_model=segmenter.mpp,
        segmenter=segmenter.name,
        segmenter_version=segmenter.version,
        device=segmenter.device,
    )
