"""A batch's cell table as its exports read it: a row group (~32 images) at a time, each row's image checked against the manifest.

Memory stays that of one row group whatever the batch size. A row naming an image the manifest
does not hold (a cell table and a manifest from different runs) stops the export with one line,
not a KeyError deep inside a writer; an image of the manifest without rows simply has no nuclei.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES, UNCLASSIFIED
from wsi_assets.cells.store import UnreadableCellTable

# A class outside the vocabulary is exported as "other": COCO categories and YOLO indices are fixed.
FALLBACK_CLASS = "other"


class CellsNotInManifest(UnreadableCellTable):
    """The cell table names an image the batch's manifest does not hold: permanent, not worth a retry."""


def row_groups(cells_path: Path, manifest: BatchManifest, columns: list[str]) -> Iterator[pa.Table]:
    """The table's row groups in file order, with `image` and `columns`."""
    known = pa.array(sorted(i.name for i in manifest.images), pa.string())
    parquet = pq.ParquetFile(str(cells_path))
    for index in range(parquet.num_row_groups):
        group = parquet.read_row_group(index, columns=["image", *columns])
        names = pc.unique(group.column("image"))
        strangers = names.filter(pc.invert(pc.is_in(names, value_set=known))).to_pylist()
        if strangers:
            raise CellsNotInManifest(
                f"{Path(cells_path).name} has nuclei of {strangers[0]!r}{' and more images' if len(strangers) > 1 else ''}, not in batch "
                f"{manifest.batch}'s manifest: the cell table and the manifest are from different runs; run process_batch again"
            )
        yield group


def outline_bounds(group: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat float32 coordinates x0 y0 x1 y1 ..., each row's vertex offsets (n rows + 1), each row's
    box (n, 4) as x min, y min, x max, y max): the whole row group at once, no Python loop per nucleus."""
    polygons = group.column("polygon_coords").combine_chunks()
    values = polygons.flatten().to_numpy()
    offsets = (polygons.offsets.to_numpy() - polygons.offsets[0].as_py()) // 2
    if group.num_rows == 0:  # a row group of images without nuclei
        return values, offsets, np.zeros((0, 4), values.dtype)
    if np.any(np.diff(offsets) == 0):  # batch_cells never writes one: the table is not its
        raise UnreadableCellTable("the cell table holds a nucleus without an outline: run process_batch again")
    points = values.reshape(-1, 2)
    starts = offsets[:-1]
    box = np.stack(
        [
            np.minimum.reduceat(points[:, 0], starts),
            np.minimum.reduceat(points[:, 1], starts),
            np.maximum.reduceat(points[:, 0], starts),
            np.maximum.reduceat(points[:, 1], starts),
        ],
        axis=1,
    )
    return values, offsets, box


def class_index(name: str) -> int:
    """The class's place in CLASS_NAMES: YOLO's class index, COCO's category id minus one;
    `unclassified` (fluorescence nuclei) comes after them, as `batch_class_names` lists it."""
    if name == UNCLASSIFIED:
        return len(CLASS_NAMES)
    return CLASS_NAMES.index(name if name in CLASS_NAMES else FALLBACK_CLASS)


def batch_class_names(manifest: BatchManifest) -> tuple[str, ...]:
    """The batch's categories: CLASS_NAMES, and `unclassified` after them when it holds fluorescence images."""
    fluorescent = any(getattr(image, "modality", "brightfield") == "fluorescence" for image in manifest.images)
    return (*CLASS_NAMES, UNCLASSIFIED) if fluorescent else CLASS_NAMES


def image_class_counts(cells_path: Path, manifest: BatchManifest) -> dict[str, Counter]:
    """Each image's nuclei per class (images without nuclei absent): small, one entry per image and class."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for group in row_groups(cells_path, manifest, [CLASS_COLUMN]):
        grouped = group.group_by(["image", CLASS_COLUMN]).aggregate([([], "count_all")])
        for image, cell_class, count in zip(*(grouped.column(c).to_pylist() for c in ("image", CLASS_COLUMN, "count_all"))):
            counts[image][cell_class] += count
    return counts
