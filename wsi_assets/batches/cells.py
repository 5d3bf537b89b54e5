"""Every new or changed image of a batch through the default segmenter and cell classifier, into one cell table.

Images the manifest marks fluorescence go through the fluorescence model instead (one at a time,
`segmentation.fluorescence`) and get no class from the H&E classifier: `unclassified`.

The table (`cells.parquet`) holds one row per nucleus with the image's name in `image`; it is
written a few images at a time, so memory stays flat whatever the batch size. Cells of unchanged
images are copied from the previous result, never segmented again. Images are decoded and
post-processed (outlines, measurements, classes) in a thread pool while the segmenter works on
the next one; same-sized images go through the network several at a time
(a GPU batch, or one per core on a CPU: see `images_per_network_call`). Each image is decoded
from bytes whose hash must be the manifest's: one that changed since is left out and reported.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.batches.images import BatchImageChanged, read_batch_image
from wsi_assets.batches.manifest import UNCHANGED, BatchManifest, ManifestImage
from wsi_assets.cells.cell_classifier import CellClassifier
from wsi_assets.cells.classes import CLASS_COLUMN, UNCLASSIFIED
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, NucleusMeasurer
from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.core.progress import Progress
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, EmbeddingMaps, embeddings_at
from wsi_assets.segmentation.fluorescence import segment_fluorescence
from wsi_assets.segmentation.image import segment_images_with_embeddings
from wsi_assets.segmentation.modality import BRIGHTFIELD, FLUORESCENCE
from wsi_assets.segmentation.protocol import Segmenter

CELLS_FILE = "cells.parquet"
IMAGES_PER_ROW_GROUP = 32

CELL_SCHEMA = pa.schema(
    [
        pa.field("image", pa.string()),
        pa.field("cell_id", pa.int32()),  # 1..n within its image
        pa.field("centroid_x", pa.float64()),
        pa.field("centroid_y", pa.float64()),
        pa.field("area_pixels", pa.float64()),
        pa.field("area_um2", pa.float64()),
        pa.field("polygon_coords", pa.list_(pa.float32())),  # x0, y0, x1, y1, ... in image pixels
        pa.field(CLASS_COLUMN, pa.string()),
        *[pa.field(name, pa.float32()) for name in MEASUREMENT_COLUMNS],
        pa.field("modality", pa.string()),  # brightfield | fluorescence: the model family that found it
    ]
)


def images_per_network_call(segmenter: Segmenter) -> int:
    """Same-shaped images stacked per network call, as the segmenter advises (one for segmenters that do not say)."""
    return max(1, int(getattr(segmenter, "inputs_per_call", 1) or 1))


def image_cells(
    rgb: np.ndarray,
    labels: np.ndarray,
    image: ManifestImage,
    classifier: CellClassifier | None,
    embedding_maps: EmbeddingMaps | None = None,
    model_mpp: float = 0.0,
) -> pa.Table:
    """The cell rows of one segmented image: outline, measurements and class of each nucleus.

    With `embedding_maps` (at the model's `model_mpp`), the classifier also reads each nucleus's
    embedding; the batch table does not keep it, as batches are classified once, here.
    Without a classifier (fluorescence images) every nucleus is `unclassified`.
    """
    measurer = NucleusMeasurer(image.mpp)
    table = nuclei_from_labels(labels, measure=lambda ids, outlines: measurer(labels, rgb, ids, outlines))
    count = len(table)
    if not count:  # an image without nuclei still has its (empty) measurement columns
        table.columns = {name: np.zeros(0, np.float32) for name in MEASUREMENT_COLUMNS}
    area_um2 = table.area_pixels * image.mpp * image.mpp
    features = {**{name: table.columns[name] for name in MEASUREMENT_COLUMNS}, "area_um2": area_um2}
    if embedding_maps is not None and count and classifier is not None:
        to_model = image.mpp / model_mpp
        features[EMBEDDING_COLUMN] = embeddings_at(embedding_maps, table.centroid_x * to_model, table.centroid_y * to_model)
    if classifier is None:
        classes = np.full(count, UNCLASSIFIED, object)
    else:
        classes = classifier.predict(features) if count else np.zeros(0, object)
    flat = table.vertices.reshape(-1).astype(np.float32)
    polygons = pa.ListArray.from_arrays(pa.array((table.offsets * 2).astype(np.int32)), pa.array(flat))
    columns = {
        "image": pa.array([image.name] * count, pa.string()),
        "cell_id": pa.array(np.arange(1, count + 1, dtype=np.int32)),
        "centroid_x": pa.array(table.centroid_x.astype(np.float64)),
        "centroid_y": pa.array(table.centroid_y.astype(np.float64)),
        "area_pixels": pa.array(table.area_pixels.astype(np.float64)),
        "area_um2": pa.array(area_um2.astype(np.float64)),
        "polygon_coords": polygons,
        CLASS_COLUMN: pa.array([str(c) for c in classes], pa.string()),
        **{name: pa.array(np.asarray(table.columns[name], np.float32)) for name in MEASUREMENT_COLUMNS},
        "modality": pa.array([image.modality] * count, pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=CELL_SCHEMA)


def _previous_cells(previous_cells: Path | None, names: set[str]) -> Iterator[pa.Table]:
    if previous_cells is None or not names or not Path(previous_cells).exists():
        return
    parquet = pq.ParquetFile(str(previous_cells))
    for index in range(parquet.num_row_groups):
        group = parquet.read_row_group(index)
        keep = pa.compute.is_in(group.column("image"), value_set=pa.array(sorted(names), pa.string()))
        kept = group.filter(keep)
        if kept.num_rows:
            if "modality" not in kept.column_names:  # a table from before fluorescence support: bright-field only
                kept = kept.append_column("modality", pa.array([BRIGHTFIELD] * kept.num_rows, pa.string()))
            yield kept.select(CELL_SCHEMA.names).cast(CELL_SCHEMA)


@dataclass(frozen=True)
class SegmentedBatch:
    counts: dict[str, int]  # cells per image in the table
    changed: list[tuple[str, str]]  # (image, why): changed during the run, so not segmented and not in the table


def segment_batch_images(
    manifest: BatchManifest,
    folder: Path,
    destination: Path,
    segmenter: Segmenter,
    classifier: CellClassifier,
    previous_cells: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    workers: int = 0,
    fluorescence_model=None,
) -> SegmentedBatch:
    """Write the batch's cell table to `destination`; the number of cells of each image, and the images left out.

    `fluorescence_model` (a name, file or model for `segment_fluorescence`; None: the shipped one)
    segments the images the manifest marks fluorescence."""
    import pyarrow.compute  # noqa: F401 - pa.compute is loaded on first use

    todo = manifest.to_segment
    unchanged = {i.name for i in manifest.images if i.change == UNCHANGED}
    counts = {i.name: 0 for i in manifest.images}
    changed: list[tuple[str, str]] = []
    started = time.monotonic()
    with pq.ParquetWriter(str(destination), CELL_SCHEMA, compression="zstd") as writer:
        for kept in _previous_cells(previous_cells, unchanged):
            writer.write_table(kept)
            for name, n in zip(*np.unique(kept.column("image").to_numpy(zero_copy_only=False), return_counts=True)):
                counts[str(name)] += int(n)
        new_cells = 0
        pending: list[pa.Table] = []
        workers = workers or os.cpu_count() or 2
        stack = images_per_network_call(segmenter)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Decoding runs a few images ahead; the post-processing of one image (outlines,
            # measurements, class) overlaps the network's work on the next ones.
            decoded: dict[int, Future] = {}
            post: deque[Future] = deque()
            for start in range(0, len(todo), stack):
                for ahead in range(start, min(len(todo), start + stack + 4)):
                    if ahead not in decoded:
                        decoded[ahead] = pool.submit(read_batch_image, folder / todo[ahead].name, todo[ahead].sha256)
                group, rgbs = [], []
                for index, image in enumerate(todo[start : start + stack], start):
                    try:
                        pixels = decoded.pop(index).result()
                    except BatchImageChanged as error:
                        changed.append((image.name, str(error)))
                        counts.pop(image.name)
                        continue
                    if image.modality == FLUORESCENCE:
                        labels = segment_fluorescence(pixels.channel, image.mpp, fluorescence_model).labels
                        post.append(pool.submit(image_cells, pixels.rgb, labels, image, None))
                    else:
                        rgbs.append(pixels.rgb)
                        group.append(image)
                labels, maps = (
                    segment_images_with_embeddings(rgbs, [image.mpp for image in group], segmenter) if group else ([], None)
                )
                maps = maps if maps is not None and classifier.needs_embedding else [None] * len(group)
                for rgb, image_labels, image, image_maps in zip(rgbs, labels, group, maps):
                    post.append(pool.submit(image_cells, rgb, image_labels, image, classifier, image_maps, float(segmenter.mpp)))
                last = start + stack >= len(todo)  # the 100% line counts every nucleus
                while post and (last or post[0].done() or len(post) > 2 * workers + stack):
                    pending.append(post.popleft().result())
                    new_cells += pending[-1].num_rows
                    if len(pending) >= IMAGES_PER_ROW_GROUP:
                        _flush(writer, pending, counts)
                if progress:
                    done = min(len(todo), start + stack)
                    progress(Progress(done, len(todo), new_cells, time.monotonic() - started, unit="images"))
        _flush(writer, pending, counts)
    return SegmentedBatch(counts, changed)


def _flush(writer: pq.ParquetWriter, pending: list[pa.Table], counts: dict[str, int]) -> None:
    if not pending:
        return
    for table in pending:
        if table.num_rows:
            counts[table.column("image")[0].as_py()] += table.num_rows
    writer.write_table(pa.concat_tables(pending))
    pending.clear()
