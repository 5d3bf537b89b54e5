"""summary.xlsx for a batch: sheet `images`, one row per image (never one per nucleus), the rows of summary.json."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook

from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.exports.summary import image_rows
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.core.atomic import atomic_output

BATCH_FILE = "summary.xlsx"
SHEET = "images"


def write_batch_workbook(cells_path: Path, manifest: BatchManifest, destination: Path) -> int:
    """summary.xlsx; returns the number of image rows."""
    rows = image_rows(cells_path, manifest)
    # Write-only: openpyxl streams the rows to disk instead of keeping a cell object each.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SHEET)
    header = list(rows[0]) if rows else ["image"]
    sheet.append(header)
    for row in rows:
        sheet.append([row[name] for name in header])
    with atomic_output(Path(destination)) as temporary:
        workbook.save(str(temporary))
    return len(rows)


BATCH_FORMAT = BatchExportFormat(
    name="excel",
    file_name=BATCH_FILE,
    kinds=("excel",),
    description="summary.xlsx: sheet images, one row per image: size, µm/px and its source, cells, cells per mm² of the whole image, each class's count.",
    write=write_batch_workbook,
)
