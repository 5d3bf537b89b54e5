"""summary.xlsx: one workbook per branch: sheet `slides`, one row per published slide, and sheet
`batches`, one row per published batch (never one row per cell or image).

Rebuilt whole from the published summary.json files each time a slide or batch of the branch is
published, and written atomically, so it always matches the folders beside it. A slide's and a
batch's summary.json differ (a batch's has no tissue area or model, but images and rejected
files), so each kind has its own sheet: one shared sheet would leave rows without a name.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from openpyxl import Workbook

from wsi_assets.core.atomic import atomic_output

WORKBOOK = "summary.xlsx"
SUMMARY = "summary.json"
SLIDES_SHEET, BATCHES_SHEET = "slides", "batches"
COLUMNS = (
    ("slide", "slide"),
    ("nuclei", "nuclei"),
    ("nuclei_per_mm2", "nuclei per mm²"),
    ("tissue_area_mm2", "tissue area mm²"),
    ("mpp", "µm/px"),
    ("mpp_inferred", "µm/px inferred"),
    ("model", "model"),
    ("model_version", "model version"),
    ("run_id", "run id"),
    ("lymphocytes_per_mm2", "lymphocytes per mm²"),
    ("lymphocytes_per_mm2_epithelium", "lymphocytes per mm² in epithelium"),
    ("lymphocytes_per_mm2_stroma", "lymphocytes per mm² in stroma"),
)
BATCH_COLUMNS = ("batch", "images", "nuclei", "rejected files", "median µm/px", "images with µm/px inferred")


def published_summaries(branch_dir: Path) -> list[dict]:
    """Each published slide's or batch's summary.json in the branch's output folder, by name."""
    found = []
    for entry in sorted(Path(branch_dir).iterdir()) if Path(branch_dir).is_dir() else []:
        # Hidden names are result sets and temporaries, never a published slide.
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            summary = json.loads((entry / SUMMARY).read_text())
        except (OSError, ValueError):
            continue  # a slide published before summaries existed, or with summary not requested
        if isinstance(summary, dict):
            found.append(summary)
    return found


def _batch_row(summary: dict) -> list:
    images = [row for row in summary.get("per_image") or [] if isinstance(row, dict)]
    mpps = [row["mpp"] for row in images if isinstance(row.get("mpp"), (int, float))]
    return [
        summary.get("batch"),
        summary.get("images"),
        summary.get("cells"),
        len(summary.get("rejected") or []),
        round(statistics.median(mpps), 4) if mpps else None,
        sum(1 for row in images if row.get("mpp_inferred")),
    ]


def write_branch_workbook(branch_dir: Path) -> tuple[Path, int]:
    """Rewrite <branch outputs>/summary.xlsx from the published summaries; returns its path and slide row count."""
    summaries = published_summaries(branch_dir)
    slides = [s for s in summaries if s.get("slide")]
    batches = [s for s in summaries if s.get("batch") and not s.get("slide")]
    book = Workbook()
    sheet = book.active
    sheet.title = SLIDES_SHEET
    classes = sorted({name for summary in slides for name in (summary.get("class_counts") or {})})
    sheet.append([title for _, title in COLUMNS] + [f"{name} nuclei" for name in classes])
    for summary in slides:
        counts = summary.get("class_counts") or {}
        sheet.append([summary.get(key) for key, _ in COLUMNS] + [counts.get(name, 0) for name in classes])
    sheet.freeze_panes = "B2"
    batch_sheet = book.create_sheet(BATCHES_SHEET)
    batch_classes = sorted({name for summary in batches for name in (summary.get("class_counts") or {})})
    batch_sheet.append(list(BATCH_COLUMNS) + [f"{name} nuclei" for name in batch_classes])
    for summary in batches:
        counts = summary.get("class_counts") or {}
        batch_sheet.append(_batch_row(summary) + [counts.get(name, 0) for name in batch_classes])
    batch_sheet.freeze_panes = "B2"
    path = Path(branch_dir) / WORKBOOK
    with atomic_output(path) as temporary:
        book.save(temporary)
    return path, len(slides)
