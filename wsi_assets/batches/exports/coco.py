"""A batch's coco.json: COCO instance segmentation over the batch's images (`BATCH_FORMAT`).

One `images` entry per image of the manifest, one annotation per nucleus, categories the
fixed CLASS_NAMES. Streamed: the annotations go to the file a row group at a time, so a
10,000-image batch never holds its millions of annotations in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.exports.table import batch_class_names, class_index, outline_bounds, row_groups
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.exports.tiles import NUCLEUS
from wsi_assets.core.atomic import atomic_output

BATCH_FILE = "coco.json"
RESULT_SET_IMAGES = "yolo/images"  # where a batch's result set holds its images (wsi_assets.batches.exports.yolo)


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
        pattern = _COORDINATE_PATTERNS.get(counts[n]) or _COORDINATE_PATTERNS.setdefault(
            counts[n], ", ".join(["%.2f"] * (2 * counts[n]))
        )
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
            {"id": ids[i.name], "file_name": prefix + i.name, "width": i.width, "height": i.height, "modality": i.modality}
            for i in manifest.images
        ],
    }
    categories = [
        {"id": index + 1, "name": name, "supercategory": NUCLEUS} for index, name in enumerate(batch_class_names(manifest))
    ]
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
