"""summary.json for a batch: one row per image (counts, density, classes), the batch's totals and its rejected files.

The per-image rows are also the Excel summary's (wsi_assets.batches.exports.workbook); they
come from each image's class counts, a few numbers per image, never from the nuclei themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.exports.table import batch_class_names, image_class_counts
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.core.atomic import write_text_atomic

BATCH_FILE = "summary.json"


def image_rows(cells_path: Path, manifest: BatchManifest) -> list[dict]:
    """One row per image of the manifest, in its order: size, µm/px and source, cells, cells per mm², each class's count."""
    counts = image_class_counts(cells_path, manifest)
    names = batch_class_names(manifest)
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
                "modality": image.modality,
                "modality_source": image.modality_source,
                "cells": total,
                "cells_per_mm2": round(total / area_mm2, 1) if area_mm2 else 0.0,
                **{f"{name}_count": int(classes[name]) for name in names},
            }
        )
    return rows


def batch_summary(cells_path: Path, manifest: BatchManifest) -> dict:
    """What summary.json holds: the batch's image and cell totals, class counts, per-image rows and rejected files."""
    rows = image_rows(cells_path, manifest)
    return {
        "batch": manifest.batch,
        "images": len(rows),
        "cells": sum(r["cells"] for r in rows),
        "class_counts": {name: sum(r[f"{name}_count"] for r in rows) for name in batch_class_names(manifest)},
        "per_image": rows,
        "rejected": [{"file": name, "why": why} for name, why in manifest.rejected],
    }


def write_batch_summary(cells_path: Path, manifest: BatchManifest, destination: Path) -> int:
    """summary.json; returns the number of image rows."""
    summary = batch_summary(cells_path, manifest)
    write_text_atomic(destination, json.dumps(summary, indent=1))
    return summary["images"]


BATCH_FORMAT = BatchExportFormat(
    name="json",
    file_name=BATCH_FILE,
    kinds=("json",),
    description="summary.json: the batch's totals and class counts, the same per-image rows as summary.xlsx, the rejected files.",
    write=write_batch_summary,
)
