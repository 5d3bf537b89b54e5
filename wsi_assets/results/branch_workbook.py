"""summary.xlsx: one workbook per branch, one row per published slide (never one row per cell).

Rebuilt whole from the slides' published summary.json files each time a slide of the branch is
published, and written atomically, so it always matches the folders beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from openpyxl import Workbook

from wsi_assets.core.atomic import atomic_output

WORKBOOK = "summary.xlsx"
SUMMARY = "summary.json"
COLUMNS = (
    ("slide", "slide"), ("nuclei", "nuclei"), ("nuclei_per_mm2", "nuclei per mm²"), ("tissue_area_mm2", "tissue area mm²"),
    ("mpp", "µm/px"), ("mpp_inferred", "µm/px inferred"), ("model", "model"), ("model_version", "model version"),
    ("run_id", "run id"),
)


def published_summaries(branch_dir: Path) -> list[dict]:
    """Each published slide's summary.json in the branch's output folder, by slide name."""
    found = []
    for entry in sorted(Path(branch_dir).iterdir()) if Path(branch_dir).is_dir() else []:
        # Hidden names are result sets and temporaries, never a published slide.
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            found.append(json.loads((entry / SUMMARY).read_text()))
        except (OSError, ValueError):
            continue  # a slide published before summaries existed, or with summary not requested
    return found


def write_branch_workbook(branch_dir: Path) -> tuple[Path, int]:
    """Rewrite <branch outputs>/summary.xlsx from the published summaries; returns its path and row count."""
    summaries = published_summaries(branch_dir)
    classes = sorted({name for summary in summaries for name in (summary.get("class_counts") or {})})
    book = Workbook()
    sheet = book.active
    sheet.title = "slides"
    sheet.append([title for _, title in COLUMNS] + [f"{name} nuclei" for name in classes])
    for summary in summaries:
        counts = summary.get("class_counts") or {}
        sheet.append([summary.get(key) for key, _ in COLUMNS] + [counts.get(name, 0) for name in classes])
    sheet.freeze_panes = "B2"
    path = Path(branch_dir) / WORKBOOK
    with atomic_output(path) as temporary:
        book.save(temporary)
    return path, len(summaries)
