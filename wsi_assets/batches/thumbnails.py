"""A grid of the batch's first images with their nuclei outlined in class colours: the UI's look at a batch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wsi_assets.batches.images import BatchImageRejected, read_batch_image
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.classes import CLASS_COLUMN, class_colour

CELL_PX = 128
COLUMNS = 4


def thumbnail_grid(manifest: BatchManifest, folder: Path, cells: Path, count: int = 16) -> bytes:
    """A JPEG of up to `count` images, each CELL_PX wide, with their outlines."""
    images = manifest.images[:count]
    rows = max(1, -(-len(images) // COLUMNS))
    grid = np.full((rows * CELL_PX, COLUMNS * CELL_PX, 3), 255, np.uint8)
    table = (
        pq.read_table(
            str(cells), columns=["image", "polygon_coords", CLASS_COLUMN], filters=[("image", "in", [i.name for i in images])]
        )
        if images
        else None
    )
    for index, image in enumerate(images):
        try:
            rgb = np.ascontiguousarray(read_batch_image(folder / image.name, image.sha256).rgb)
        except BatchImageRejected:
            continue  # changed or gone since it was segmented: its outlines would be drawn on other pixels

        scale = CELL_PX / max(image.width, image.height)
        small = cv2.resize(
            rgb, (max(1, round(image.width * scale)), max(1, round(image.height * scale))), interpolation=cv2.INTER_AREA
        )
        mine = table.filter(pc.equal(table.column("image"), image.name))
        for coords, cell_class in zip(mine.column("polygon_coords").to_pylist(), mine.column(CLASS_COLUMN).to_pylist()):
            points = np.round(np.asarray(coords).reshape(-1, 2) * scale).astype(np.int32)
            cv2.polylines(small, [points], True, class_colour(cell_class), 1)
        row, col = divmod(index, COLUMNS)
        grid[row * CELL_PX : row * CELL_PX + small.shape[0], col * CELL_PX : col * CELL_PX + small.shape[1]] = small
    _ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpeg.tobytes()
