"""COCO instance segmentation: a slide's `coco/` over tiles (`FORMAT`); a batch's coco.json is wsi_assets.batches.exports.coco.

Tiling, clipping and units are those of wsi_assets.cells.exports.tiles: tile size in
level-0 pixels, images at level 0, only tiles with nuclei, a nucleus across a border clipped into
each tile it crosses (largest part kept). Off by default: list `coco` in branch.yaml's `exports`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.table import polygon_area
from wsi_assets.cells.exports.tiles import NUCLEUS, TileImages, cell_classes, class_names, iter_tiles, slide_stem, tile_size_of
from wsi_assets.core.atomic import atomic_output

ANNOTATIONS = "annotations.json"
IMAGES = "images"


def _two_decimals(points: np.ndarray) -> list[float]:
    """round(v, 2) of each coordinate, flattened, as Python floats."""
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
    # Category id = YOLO class index + 1 (COCO trainers keep 0 for the background).
    categories = {name: i + 1 for i, name in enumerate(class_names(cell_classes(cells_path)))}
    images, annotations = [], []
    with TileImages(Path(provenance["slide_path"])) as reader, atomic_output(Path(dest)) as folder:
        (folder / IMAGES).mkdir(parents=True)
        width, height = reader.dimensions
        for tile in iter_tiles(cells_path, width, height, tile_size, reader.downsample):
            name = f"{tile.name(stem)}.jpg"
            (folder / IMAGES / name).write_bytes(reader.jpeg(tile))
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{IMAGES}/{name}",
                    "width": tile.image_width,
                    "height": tile.image_height,
                    "level0_x": tile.x0,
                    "level0_y": tile.y0,
                    "downsample": reader.downsample,
                }
            )
            for cell_id, points, label in zip(tile.cell_ids, tile.polygons, tile.classes):
                annotations.append(
                    # The exported outline's own area, so `area` agrees with `segmentation`.
                    _annotation(len(annotations) + 1, image_id, categories[label], points, polygon_area(points), cell_id=cell_id)
                )
        document = {
            "info": {
                "description": f"{provenance['slide']}: nuclei over {tile_size} px tiles (level-0 px)",
                "version": provenance.get("wsi_assets_version", ""),
                "date_created": provenance.get("exported_at", ""),
                "tile_size_level0_px": tile_size,
                "level": reader.level,
                "provenance": {k: v for k, v in provenance.items() if k != "slide_path"},
            },
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
