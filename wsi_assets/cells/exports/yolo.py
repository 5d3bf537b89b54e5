"""yolo/: YOLO-seg for a slide over tiles (`FORMAT`); a batch's is wsi_assets.batches.exports.yolo.

Each label line is `class x1 y1 ... xn yn`, coordinates divided by the image's width and height
(0-1), n >= 3.

Slide: images/<stem>_x<x>_y<y>.jpg, labels/<same>.txt, data.yaml; same tiles and clipping as the
COCO export (wsi_assets.cells.exports.tiles). Off by default: list `yolo` in branch.yaml's `exports`.

Class indices are the places in CLASS_NAMES (as for a batch); a slide whose nuclei
have no class has the one class `nucleus`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.exports.tiles import TileImages, cell_classes, class_names, iter_tiles, slide_stem, tile_size_of
from wsi_assets.core.atomic import atomic_output

IMAGES, LABELS, DATA = "images", "labels", "data.yaml"


def label_line(class_index: int, points: np.ndarray, width: int, height: int) -> str:
    normalised = np.clip(np.asarray(points, np.float64) / (width, height), 0.0, 1.0)
    return f"{class_index} " + " ".join(f"{v:.6f}" for v in normalised.reshape(-1).tolist())


def write_yolo(cells_path: Path, dest: Path, provenance: dict) -> int:
    """The YOLO-seg folder for a slide; returns the number of label lines (clipped nucleus parts)."""
    stem, tile_size = slide_stem(provenance), tile_size_of(provenance)
    names = class_names(cell_classes(cells_path))
    index = {name: i for i, name in enumerate(names)}
    lines_written = 0
    with TileImages(Path(provenance["slide_path"])) as reader, atomic_output(Path(dest)) as folder:
        (folder / IMAGES).mkdir(parents=True)
        (folder / LABELS).mkdir()
        width, height = reader.dimensions
        for tile in iter_tiles(cells_path, width, height, tile_size, reader.downsample):
            name = tile.name(stem)
            (folder / IMAGES / f"{name}.jpg").write_bytes(reader.jpeg(tile))
            lines = [
                label_line(index[label], points, tile.image_width, tile.image_height)
                for points, label in zip(tile.polygons, tile.classes)
            ]
            (folder / LABELS / f"{name}.txt").write_text("\n".join(lines) + "\n")
            lines_written += len(lines)
        data = {
            "path": ".",
            "train": IMAGES,
            "val": IMAGES,
            "names": dict(enumerate(names)),
            "tile_size_level0_px": tile_size,
            "level": reader.level,
            "slide": provenance["slide"],
        }
        (folder / DATA).write_text(yaml.safe_dump(data, sort_keys=False))
    return lines_written


FORMAT = ExportFormat(
    asset_name="cells_yolo",
    file_name="yolo",
    kinds=("yolo",),
    description="yolo/: YOLO-seg training set over level-0 tiles (JPEG images, one label .txt per tile, data.yaml). Off unless listed in branch.yaml.",
    write=write_yolo,
    default_on=False,
)
