"""summary.json: the figures the UI shows for a slide, in one small file at the top of its folder.

Nuclei, tissue area and density, µm/px (and whether it was inferred), model and version,
per-class counts when the cell table has classes, the run and the branch settings in force.
The branch's summary.xlsx (wsi_assets.results.branch_workbook) is gathered from these files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.exports.tiles import cell_classes
from wsi_assets.cells.store import count_cells
from wsi_assets.core.atomic import write_text_atomic

FILE_NAME = "summary.json"
CLASSES_FIGURES = "classes.json"
COMPARTMENT_FIGURES = ("lymphocytes_per_mm2_epithelium", "lymphocytes_per_mm2_stroma", "epithelium_mm2", "stroma_mm2")


def slide_summary(cells_path: Path, provenance: dict) -> dict:
    # The segmentation's own summary.json sits beside cells.parquet (wsi_assets.core.slide_outputs).
    segmentation = json.loads((Path(cells_path).parent / "summary.json").read_text())
    nuclei = count_cells(cells_path)
    tissue_mm2 = float(segmentation.get("tissue_mm2") or 0.0)
    summary = {
        "slide": provenance["slide"],
        "slide_file": provenance["slide_file"],
        "nuclei": nuclei,
        "tissue_area_mm2": round(tissue_mm2, 4),
        "nuclei_per_mm2": round(nuclei / tissue_mm2, 1) if tissue_mm2 else 0.0,
        "mpp": provenance["mpp"],
        "mpp_inferred": provenance.get("mpp_inferred"),
        "mpp_source": provenance.get("mpp_source"),
        "model": provenance["segmenter"],
        "model_version": provenance["segmenter_version"],
        "run_id": provenance.get("run_id"),
        "settings": provenance.get("settings"),
        "wsi_assets_version": provenance.get("wsi_assets_version"),
        "exported_at": provenance.get("exported_at"),
    }
    classes = cell_classes(cells_path)
    if classes is not None:
        summary["class_counts"] = dict(sorted(Counter(classes.values()).items()))
        summary["class_densities_per_mm2"] = {
            name: round(count / tissue_mm2, 1) if tissue_mm2 else 0.0 for name, count in summary["class_counts"].items()
        }
        summary["lymphocytes_per_mm2"] = summary["class_densities_per_mm2"].get("inflammatory", 0.0)
        # Per compartment, as cell_classification measured them (classes.json beside the stored cells).
        figures_path = Path(cells_path).parent / CLASSES_FIGURES
        figures = json.loads(figures_path.read_text()) if figures_path.exists() else {}
        summary.update({name: figures.get(name) for name in COMPARTMENT_FIGURES})
    return summary


def write_slide_summary(cells_path: Path, dest: Path, provenance: dict) -> int:
    """summary.json for the slide; returns the number of nuclei it counts."""
    summary = slide_summary(cells_path, provenance)
    write_text_atomic(Path(dest), json.dumps(summary, indent=2))
    return summary["nuclei"]


FORMAT = ExportFormat(
    asset_name="slide_summary",
    file_name=FILE_NAME,
    kinds=("json",),
    description="summary.json: the slide's nuclei, tissue area, density per mm², µm/px, model, run and settings; gathered into the branch's summary.xlsx.",
    write=write_slide_summary,
    name="summary",
)
