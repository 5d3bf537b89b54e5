"""COCO instance segmentation: a slide's `coco/` over tiles (`FORMAT`) and a batch's `coco.json` (`BATCH_FORMAT`).

Slide: tiling, clipping and units are those of wsi_assets.cells.exports.tiles: tile size in
level-0 pixels, images at level 0, only tiles with nuclei, a nucleus across a border clipped into
each tile it crosses (largest part kept). Off by default: list `coco` in branch.yaml's `exports`.

Batch: one `images` entry per image of the manifest, one annotation per nucleus, categories the
fixed CLASS_NAMES. Streamed: the annotations go to the file a row group at a time, so a
10,000-image batch never holds its millions of annotations in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.exports.batch_table import class_index, outlines, row_groups
from wsi_assets.cells.exports.format import BatchExportFormat, ExportFormat
from wsi_assets.cells.exports.tiles import NUCLEUS, TileImages, cell_classes, iter_tiles, slide_stem, tile_size_of
from wsi_assets.core.atomic import atomic_output

if TYPE_CHECKING:
    from wsi_assets.batches.manifest import BatchManifest

ANNOTATIONS = "annotations.json"
IMAGES = "images"
BATCH_FILE = "coco.json"


def _outline_area(points) -> float:
    # Shoelace area of the exported outline, so `area` agrees with `segmentation`.
    xs, ys = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _two_decimals(points: np.ndarray) -> list[float]:
    """round(v, 2) of each coordinate, flattened, as Python floats.

    For float32 outlines (a batch's stored cell table: millions of them, where round() per value
    was most of the COCO export's time) np.round gives exactly Python's round(): it scales by 100,
    rounds half to even and divides, and v * 100 is exact for a float32 v (24 + 7 bits < 53).
    Other outlines (a slide's, clipped and scaled to a tile) keep Python's round().
    """
    if points.dtype == np.float32:
        return np.round(points.astype(np.float64).reshape(-1), 2).tolist()
    return [round(v, 2) for v in np.asarray(points, np.float64).reshape(-1).tolist()]


def _annotation(annotation_id: int, image_id: int, category_id: int, points: np.ndarray, area: float, **extra) -> dict:
    flat = np.asarray(points, np.float64).reshape(-1)
    # Python floats: min() and max() over a few dozen of them cost less than numpy's reductions.
    xs, ys = flat[0::2].tolist(), flat[1::2].tolist()
    x0, y0 = min(xs), min(ys)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [_two_decimals(points)],
        "bbox": [round(x0, 2), round(y0, 2), round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
        "area": round(float(area), 2),
        "iscrowd": 0,
        **extra,
    }


def write_coco(cells_path: Path, dest: Path, provenance: dict) -> int:
    """The COCO folder for a slide; returns the number of annotations (clipped nucleus parts)."""
    stem, tile_size = slide_stem(provenance), tile_size_of(provenance)
    classes = cell_classes(cells_path)
    categories = {name: i + 1 for i, name in enumerate(sorted(set(classes.values())) if classes else [NUCLEUS])}
    images, annotations = [], []
    with TileImages(Path(provenance["slide_path"])) as reader, atomic_output(Path(dest)) as folder:
        (folder / IMAGES).mkdir(parents=True)
        width, height = reader.dimensions
        for tile in iter_tiles(cells_path, width, height, tile_size, reader.downsample):
            name = f"{tile.name(stem)}.jpg"
            (folder / IMAGES / name).write_bytes(reader.jpeg(tile))
            image_id = len(images) + 1
            images.append(
                {"id": image_id, "file_name": f"{IMAGES}/{name}", "width": tile.image_width, "height": tile.image_height,
                 "level0_x": tile.x0, "level0_y": tile.y0, "downsample": reader.downsample}
            )
            for cell_id, points, label in zip(tile.cell_ids, tile.polygons, tile.classes):
                annotations.append(
                    _annotation(len(annotations) + 1, image_id, categories[label], points, _outline_area(points), cell_id=cell_id)
                )
        document = {
            "info": {"description": f"{provenance['slide']}: nuclei over {tile_size} px tiles (level-0 px)",
                     "version": provenance.get("wsi_assets_version", ""), "date_created": provenance.get("exported_at", ""),
                     "tile_size_level0_px": tile_size, "level": reader.level,
                     "provenance": {k: v for k, v in provenance.items() if k != "slide_path"}},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": NUCLEUS} for name, i in categories.items()],
        }
        (folder / ANNOTATIONS).write_text(json.dumps(document))
    return len(annotations)


FORMAT = ExportFormat(
    asset_name="cells_coco",
    file_name="coco",
    kinds=("coco", "json"),
    description="coco/: COCO instance segmentation over level-0 tiles (annotations.json + JPEG tiles); nuclei clipped at tile borders. Off unless listed in branch.yaml.",
    write=write_coco,
    default_on=False,
)


def write_batch_coco(cells_path: Path, manifest: BatchManifest, destination: Path) -> int:
    """The batch's coco.json, written as it is read; returns the number of annotations (nuclei)."""
    ids = {image.name: index + 1 for index, image in enumerate(manifest.images)}
    head = {
        "info": {"description": f"nuclei of batch {manifest.batch}"},
        "images": [{"id": ids[i.name], "file_name": i.name, "width": i.width, "height": i.height} for i in manifest.images],
    }
    categories = [{"id": index + 1, "name": name, "supercategory": NUCLEUS} for index, name in enumerate(CLASS_NAMES)]
    written = 0
    with atomic_output(Path(destination)) as temporary, open(temporary, "w", encoding="utf-8") as out:
        # The document json.dumps would give, in pieces: the head without its closing brace, then the annotations.
        out.write(json.dumps(head)[:-1] + ', "annotations": [')
        for group in row_groups(cells_path, manifest, ["polygon_coords", "area_pixels", CLASS_COLUMN]):
            images, classes = group.column("image").to_pylist(), group.column(CLASS_COLUMN).to_pylist()
            rows = zip(images, outlines(group), group.column("area_pixels").to_numpy(), classes)
            # A batch nucleus's `area` is its mask's pixel count (`area_pixels`), not the outline's.
            annotations = [
                _annotation(written + n, ids[image], class_index(cell_class) + 1, points, area)
                for n, (image, points, area, cell_class) in enumerate(rows, start=1)
            ]
            if annotations:
                out.write((", " if written else "") + json.dumps(annotations)[1:-1])
            written += len(annotations)
        out.write('], "categories": ' + json.dumps(categories) + "}")
    return written


BATCH_FORMAT = BatchExportFormat(
    name="coco",
    file_name=BATCH_FILE,
    kinds=("coco", "json"),
    description="coco.json: one images entry per image (file name, width, height), one annotation per nucleus (polygon, bbox, area, class as category).",
    write=write_batch_coco,
)
