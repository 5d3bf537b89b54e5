"""A batch's cell table and manifest without images or segmentation, for the batch export tests and benchmark."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.batches.cells import CELL_SCHEMA, IMAGES_PER_ROW_GROUP
from wsi_assets.batches.manifest import NEW, BatchManifest, ManifestImage
from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES


def synthetic_manifest(
    batch: str,
    names: list[str],
    width: int = 256,
    height: int = 256,
    mpp: float = 0.5,
    rejected: list[tuple[str, str]] = (),
    contents: dict[str, bytes] | None = None,
) -> BatchManifest:
    """`contents`: the bytes each image file holds, hashed into the manifest (otherwise a placeholder hash)."""
    contents = contents or {}
    hashes = [hashlib.sha256(contents[name]).hexdigest() if name in contents else f"{i:064x}" for i, name in enumerate(names)]
    images = [
        ManifestImage(name, 1000, 0, sha, width, height, mpp, "branch.yaml", False, NEW) for name, sha in zip(names, hashes)
    ]
    return BatchManifest(batch, images, list(rejected))


def random_outlines(rng: np.random.Generator, count: int, width: int, height: int, vertices: int = 24) -> np.ndarray:
    """(count, vertices, 2) float32: star-shaped nucleus-sized polygons (radius 3-8 px) inside the image."""
    centres = rng.uniform((10, 10), (width - 10, height - 10), (count, 2))
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radii = rng.uniform(3, 8, (count, 1)) * rng.uniform(0.8, 1.0, (count, vertices))
    offsets = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=-1)
    return (centres[:, None, :] + offsets).astype(np.float32)


def image_rows(image: str, outlines: np.ndarray, classes: list[str], mpp: float = 0.5) -> pa.Table:
    """One image's cell rows in CELL_SCHEMA; area_pixels is the outline's area rounded, as a pixel count is whole."""
    count, vertices = outlines.shape[:2]
    xs, ys = outlines[..., 0].astype(np.float64), outlines[..., 1].astype(np.float64)
    area = np.round(0.5 * np.abs(np.sum(xs * np.roll(ys, -1, 1) - np.roll(xs, -1, 1) * ys, axis=1)))
    offsets = np.arange(0, count * vertices * 2 + 1, vertices * 2, dtype=np.int32)
    columns = {
        "image": pa.array([image] * count, pa.string()),
        "cell_id": pa.array(np.arange(1, count + 1, dtype=np.int32)),
        "centroid_x": pa.array(xs.mean(axis=1) if count else np.zeros(0)),
        "centroid_y": pa.array(ys.mean(axis=1) if count else np.zeros(0)),
        "area_pixels": pa.array(area),
        "area_um2": pa.array(area * mpp * mpp),
        "polygon_coords": pa.ListArray.from_arrays(pa.array(offsets), pa.array(outlines.reshape(-1).astype(np.float32))),
        CLASS_COLUMN: pa.array(classes, pa.string()),
    }
    columns.update(
        {f.name: pa.array(np.zeros(count, np.float32)) for f in CELL_SCHEMA if f.name not in columns and f.type != pa.string()}
    )
    columns.setdefault("modality", pa.array(["brightfield"] * count, pa.string()))
    return pa.Table.from_pydict(columns, schema=CELL_SCHEMA)


def write_batch_cells(path: Path, manifest: BatchManifest, cells_per_image: int, seed: int = 0, vertices: int = 24) -> int:
    """cells.parquet for every image of `manifest`, random outlines and classes, row groups of 32 images as batch_cells writes."""
    rng = np.random.default_rng(seed)
    written = 0
    with pq.ParquetWriter(str(path), CELL_SCHEMA, compression="zstd") as writer:
        for start in range(0, len(manifest.images), IMAGES_PER_ROW_GROUP):
            tables = []
            for image in manifest.images[start : start + IMAGES_PER_ROW_GROUP]:
                outlines = random_outlines(rng, cells_per_image, image.width, image.height, vertices)
                classes = [CLASS_NAMES[i] for i in rng.integers(0, len(CLASS_NAMES), cells_per_image)]
                tables.append(image_rows(image.name, outlines, classes, image.mpp))
            writer.write_table(pa.concat_tables(tables))
            written += sum(t.num_rows for t in tables)
    return written
