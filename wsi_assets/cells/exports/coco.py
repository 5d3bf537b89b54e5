"""coco/: COCO instance segmentation over tiles (annotations.json + images/<stem>_x<x>_y<y>.jpg).

Tiling, clipping and units are those of wsi_assets.cells.exports.tiles: tile size in level-0
pixels, images at level 0, only tiles with nuclei, a nucleus across a border clipped into each
tile it crosses (largest part kept). Off by default: list `coco` in branch.yaml's `exports`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.exports.tiles import NUCLEUS, TileImages, cell_classes, iter_tiles, slide_stem, tile_size_of
from wsi_assets.core.atomic import atomic_output

ANNOTATIONS = "annotations.json"
IMAGES = "images"


def _annotation(annotation_id: int, image_id: int, category_id: int, points, cell_id: int) -> dict:
    xs, ys = points[:, 0], points[:, 1]
    # Shoelace area of the exported outline, so `area` agrees with `segmentation`.
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    x0, y0 = float(xs.min()), float(ys.min())
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [[round(float(v), 2) for v in points.reshape(-1)]],
        "bbox": [round(x0, 2), round(y0, 2), round(float(xs.max()) - x0, 2), round(float(ys.max()) - y0, 2)],
        "area": round(area, 2),
        "iscrowd": 0,
        "cell_id": cell_id,
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
                annotations.append(_annotation(len(annotations) + 1, image_id, categories[label], points, cell_id))
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
