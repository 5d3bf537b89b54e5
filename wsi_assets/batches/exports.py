"""A batch's exports, read from its cell table a row group at a time: COCO, YOLO-seg, an Excel summary and JSON.

- `coco.json`: one entry per image (its file name and size) and one annotation per nucleus (polygon, box, area, class).
- `yolo/labels/<image stem>.txt`: one line per nucleus (class index, outline normalised to the image), `yolo/data.yaml` the class names.
- `summary.xlsx`: one row per image (cells, cells per mm², each class's count, µm/px and its source); never one row per cell.
- `summary.json`: the same per image, the batch's totals, and the rejected files.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from openpyxl import Workbook

from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.exports.yolo import label_line
from wsi_assets.core.atomic import atomic_output, write_text_atomic

COCO_FILE, YOLO_FOLDER, EXCEL_FILE, JSON_FILE = "coco.json", "yolo", "summary.xlsx", "summary.json"
BATCH_EXPORTS = (COCO_FILE, YOLO_FOLDER, EXCEL_FILE, JSON_FILE)


def _cell_batches(cells: Path):
    parquet = pq.ParquetFile(str(cells))
    for index in range(parquet.num_row_groups):
        group = parquet.read_row_group(index, columns=["image", "polygon_coords", "area_pixels", CLASS_COLUMN])
        images = group.column("image").to_pylist()
        polygons = group.column("polygon_coords").to_pylist()
        areas = group.column("area_pixels").to_numpy()
        classes = group.column(CLASS_COLUMN).to_pylist()
        yield from zip(images, polygons, areas, classes)


def image_class_counts(cells: Path) -> dict[str, Counter]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for image, _, _, cell_class in _cell_batches(cells):
        counts[image][cell_class] += 1
    return counts


def write_coco(cells: Path, manifest: BatchManifest, destination: Path) -> int:
    ids = {image.name: index + 1 for index, image in enumerate(manifest.images)}
    categories = {name: index + 1 for index, name in enumerate(CLASS_NAMES)}
    annotations = []
    for image, coords, area, cell_class in _cell_batches(cells):
        points = np.asarray(coords, np.float64).reshape(-1, 2)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": ids[image],
                "category_id": categories.get(cell_class, categories["other"]),
                "segmentation": [[round(float(v), 2) for v in coords]],
                "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                "area": float(area),
                "iscrowd": 0,
            }
        )
    data = {
        "info": {"description": f"nuclei of batch {manifest.batch}"},
        "images": [{"id": ids[i.name], "file_name": i.name, "width": i.width, "height": i.height} for i in manifest.images],
        "annotations": annotations,
        "categories": [{"id": index, "name": name, "supercategory": "nucleus"} for name, index in categories.items()],
    }
    write_text_atomic(destination, json.dumps(data))
    return len(annotations)


def write_yolo(cells: Path, manifest: BatchManifest, destination: Path) -> int:
    sizes = {i.name: (i.width, i.height) for i in manifest.images}
    lines: dict[str, list[str]] = {i.name: [] for i in manifest.images}
    for image, coords, _, cell_class in _cell_batches(cells):
        index = CLASS_NAMES.index(cell_class) if cell_class in CLASS_NAMES else CLASS_NAMES.index("other")
        lines[image].append(label_line(index, np.asarray(coords, np.float64).reshape(-1, 2), *sizes[image]))
    with atomic_output(destination) as folder:
        (folder / "labels").mkdir(parents=True)
        for name, image_lines in lines.items():
            (folder / "labels" / f"{Path(name).stem}.txt").write_text("".join(line + "\n" for line in image_lines))
        names = "\n".join(f"  {index}: {name}" for index, name in enumerate(CLASS_NAMES))
        (folder / "data.yaml").write_text(f"path: .\nlabels: labels\nnames:\n{names}\n")
    return sum(len(v) for v in lines.values())


def image_rows(manifest: BatchManifest, counts: dict[str, Counter]) -> list[dict]:
    rows = []
    for image in manifest.images:
        classes = counts.get(image.name, Counter())
        area_mm2 = image.width * image.height * image.mpp * image.mpp / 1e6
        total = sum(classes.values())
        rows.append(
            {
                "image": image.name,
                "width": image.width,
                "height": image.height,
                "mpp": image.mpp,
                "mpp_source": image.mpp_source,
                "mpp_inferred": image.mpp_inferred,
                "cells": total,
                "cells_per_mm2": round(total / area_mm2, 1) if area_mm2 else 0.0,
                **{f"{name}_count": int(classes[name]) for name in CLASS_NAMES},
            }
        )
    return rows


def write_excel(rows: list[dict], destination: Path) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("images")
    header = list(rows[0]) if rows else ["image"]
    sheet.append(header)
    for row in rows:
        sheet.append([row[name] for name in header])
    with atomic_output(destination) as temporary:
        workbook.save(str(temporary))


def write_summary_json(rows: list[dict], manifest: BatchManifest, destination: Path) -> dict:
    totals = {name: sum(r[f"{name}_count"] for r in rows) for name in CLASS_NAMES}
    summary = {
        "batch": manifest.batch,
        "images": len(rows),
        "cells": sum(r["cells"] for r in rows),
        "class_counts": totals,
        "per_image": rows,
        "rejected": [{"file": name, "why": why} for name, why in manifest.rejected],
    }
    write_text_atomic(destination, json.dumps(summary, indent=1))
    return summary


def write_batch_exports(cells: Path, manifest: BatchManifest, folder: Path) -> dict:
    """Every export of the batch into `folder`; the JSON summary."""
    counts = image_class_counts(cells)
    rows = image_rows(manifest, counts)
    write_coco(cells, manifest, folder / COCO_FILE)
    write_yolo(cells, manifest, folder / YOLO_FOLDER)
    write_excel(rows, folder / EXCEL_FILE)
    return write_summary_json(rows, manifest, folder / JSON_FILE)
