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

from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.exports.batch_table import batch_class_names, class_index, outline_bounds, row_groups
from wsi_assets.cells.exports.format import BatchExportFormat, ExportFormat
from wsi_assets.cells.exports.tiles import NUCLEUS, TileImages, cell_classes, class_names, iter_tiles, slide_stem, tile_size_of
from wsi_assets.core.atomic import atomic_output

if TYPE_CHECKING:
    from wsi_assets.batches.manifest import BatchManifest

ANNOTATIONS = "annotations.json"
IMAGES = "images"
BATCH_FILE = "coco.json"
RESULT_SET_IMAGES = "yolo/images"  # where a batch's result set holds its images (wsi_assets.cells.exports.yolo)


def _outline_area(points) -> float:
    # Shoelace area of the exported outline, so `area` agrees with `segmentation`.
    xs, ys = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


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


# One annotation as JSON text, filled row group by row group: building a dict per nucleus and
# dumping it was most of the export's time at millions of nuclei, and "%.2f" formats a coordinate
# in about half the time of the float repr json.dumps uses (so 12.5 is written 12.50).
_ANNOTATION = '{"id": %d, "image_id": %d, "category_id": %d, "segmentation": [[%s]], "bbox": %s, "area": %r, "iscrowd": 0}'
_COORDINATE_PATTERNS: dict[int, str] = {}  # vertex count -> "%.2f, %.2f, ..." for one outline


def _batch_annotations(group, ids: dict[str, int], first_id: int) -> str:
    """The row group's annotations, comma-separated JSON. A batch nucleus's `area` is its mask's pixel
    count (`area_pixels`), not the outline's; coordinates and box are rounded to 2 decimals."""
    values, offsets, box = outline_bounds(group)
    # float32 coordinates: v * 100 is exact in float64, so np.round gives Python's round(v, 2).
    coordinates = np.round(values.astype(np.float64), 2).tolist()
    box = box.astype(np.float64)
    boxes = np.round(np.stack([box[:, 0], box[:, 1], box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]], axis=1), 2).tolist()
    areas = np.round(group.column("area_pixels").to_numpy().astype(np.float64), 2).tolist()
    categories = [class_index(c) + 1 for c in group.column(CLASS_COLUMN).to_pylist()]
    image_ids = [ids[image] for image in group.column("image").to_pylist()]
    starts, counts = (2 * offsets[:-1]).tolist(), np.diff(offsets).tolist()
    annotations = []
    for n in range(group.num_rows):
        pattern = _COORDINATE_PATTERNS.get(counts[n]) or _COORDINATE_PATTERNS.setdefault(counts[n], ", ".join(["%.2f"] * (2 * counts[n])))
        outline = pattern % tuple(coordinates[starts[n] : starts[n] + 2 * counts[n]])
        annotations.append(_ANNOTATION % (first_id + n, image_ids[n], categories[n], outline, boxes[n], areas[n]))
    return ", ".join(annotations)


def write_batch_coco(cells_path: Path, manifest: BatchManifest, destination: Path, images_dir: Path | None = None) -> int:
    """The batch's coco.json, written as it is read; returns the number of annotations (nuclei).

    With `images_dir` (the batch's input folder) each `file_name` is the image's copy inside the
    result set (yolo/images/, which the YOLO export fills), relative to coco.json: the set is
    self-contained and never points back at the inputs.
    """
    ids = {image.name: index + 1 for index, image in enumerate(manifest.images)}
    prefix = f"{RESULT_SET_IMAGES}/" if images_dir is not None else ""
    head = {
        "info": {"description": f"nuclei of batch {manifest.batch}"},
        "images": [
            {"id": ids[i.name], "file_name": prefix + i.name, "width": i.width, "height": i.height, "modality": i.modality} for i in manifest.images
        ],
    }
    categories = [{"id": index + 1, "name": name, "supercategory": NUCLEUS} for index, name in enumerate(batch_class_names(manifest))]
    written = 0
    with atomic_output(Path(destination)) as temporary, open(temporary, "w", encoding="utf-8") as out:
        # The document json.dumps would give, in pieces: the head without its closing brace, then the annotations.
        out.write(json.dumps(head)[:-1] + ', "annotations": [')
        for group in row_groups(cells_path, manifest, ["polygon_coords", "area_pixels", CLASS_COLUMN]):
            if group.num_rows:
                out.write((", " if written else "") + _batch_annotations(group, ids, written + 1))
            written += group.num_rows
        out.write('], "categories": ' + json.dumps(categories) + "}")
    return written


BATCH_FORMAT = BatchExportFormat(
    name="coco",
    file_name=BATCH_FILE,
    kinds=("coco", "json"),
    description="coco.json: one images entry per image (file name, width, height), one annotation per nucleus (polygon, bbox, area, class as category).",
    write=write_batch_coco,
    takes_images=True,
)
