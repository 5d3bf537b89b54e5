"""What a slide's report shows, read from its result set: key figures, images, class mix, checks.

The checks are the plain functions behind the Dagster asset checks, run again on the set: the
checks' own results live in Dagster's run storage, and they may still be running when the set is
published, so the report judges the very files it shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.cells.classes import class_colour
from wsi_assets.core.slide_outputs import STAGES, SlideOutputs
from wsi_assets.core.version import __version__
from wsi_assets.quality.checks import (
    CheckOutcome,
    border_duplicates,
    nuclei_density,
    nuclei_in_tissue,
    resolution_fine_enough,
)
from wsi_assets.quality.class_mix import class_mix
from wsi_assets.slides.stored import load_slide_info, load_tissue_mask

# Written by cell_classification (wsi_assets/defs/classification.py) into segmentation/.
CLASSES_JSON = "classes.json"
CLASS_OVERLAY = "class_overlay.jpg"
LYMPHOCYTE_HEATMAP = "lymphocyte_heatmap.jpg"


@dataclass(frozen=True)
class ReportImage:
    caption: str
    data: bytes
    mime: str = "image/jpeg"


@dataclass(frozen=True)
class ClassRow:
    name: str
    colour: tuple[int, int, int]
    count: int
    fraction: float
    per_mm2: float


@dataclass(frozen=True)
class CheckVerdict:
    name: str
    verdict: str  # "passed" | "failed" | "warning" (a failed check of WARN severity)
    description: str


@dataclass(frozen=True)
class SlideReport:
    title: str
    slide_file: str
    stage: str
    figures: tuple[tuple[str, str], ...]
    images: tuple[ReportImage, ...]
    classes: tuple[ClassRow, ...]
    checks: tuple[CheckVerdict, ...]
    notes: tuple[str, ...] = ()


def _verdict(name: str, outcome: CheckOutcome, warn_only: bool = False) -> CheckVerdict:
    verdict = "passed" if outcome.passed else ("warning" if warn_only else "failed")
    return CheckVerdict(name, verdict, outcome.description)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _image(caption: str, path: Path) -> tuple[ReportImage, ...]:
    return (ReportImage(caption, path.read_bytes()),) if path.exists() else ()


def slide_report(
    outputs: SlideOutputs,
    stage: str,
    title: str,
    slide_file: str,
    run_id: str | None = None,
    run_seconds: float | None = None,
) -> SlideReport:
    """The report of a whole result set that holds every stage up to `stage` (see results.result_sets.whole_stage)."""
    has_tissue = STAGES.index(stage) >= STAGES.index("tissue")
    has_cells = STAGES.index(stage) >= STAGES.index("cells")
    info = load_slide_info(outputs)
    tissue = load_tissue_mask(outputs) if has_tissue else None
    summary = _read_json(outputs.segmentation_json) if has_cells else {}
    classes = _read_json(outputs.segmentation_dir / CLASSES_JSON) if has_cells else {}

    mpp = f"{info.mpp:.4f} µm/px ({info.mpp_source}{', inferred: check it' if info.mpp_inferred else ''})"
    figures: list[tuple[str, str]] = [
        ("Slide file", slide_file),
        ("Size", f"{info.width:,} × {info.height:,} px, {info.level_count} level{'s' if info.level_count != 1 else ''}"),
        ("Resolution", mpp),
        ("Objective", f"{info.objective_power:g}x" if info.objective_power else "unknown"),
        ("Scanner", info.vendor),
    ]
    if tissue is not None:
        figures.append(("Tissue area", f"{tissue.area_mm2:.2f} mm² ({tissue.fraction:.1%} of the slide)"))
    if summary:
        cells = int(summary.get("cells", 0))
        density = f", {cells / tissue.area_mm2:,.0f} per mm² of tissue" if tissue is not None and tissue.area_mm2 else ""
        figures += [
            ("Nuclei", f"{cells:,}{density}"),
            (
                "Model",
                f"{summary.get('segmenter', '?')} v{summary.get('segmenter_version', '?')} at {summary.get('mpp_model', '?')} µm/px on {summary.get('device', '?')}",
            ),
            ("Segmentation time", f"{float(summary.get('seconds', 0)):.1f} s ({int(summary.get('tiles', 0))} tiles)"),
        ]
    if classes:
        figures.append(("Classes by", str(classes.get("method", "?"))))
        if "lymphocytes_per_mm2" in classes:
            where = [
                f"{classes[key]:,.0f} in {label}"
                for key, label in (("lymphocytes_per_mm2_epithelium", "epithelium"), ("lymphocytes_per_mm2_stroma", "stroma"))
                if classes.get(key) is not None
            ]
            figures.append(
                (
                    "Lymphocytes",
                    f"{classes['lymphocytes_per_mm2']:,.0f} per mm² of tissue" + (f" ({', '.join(where)})" if where else ""),
                )
            )
    if run_seconds is not None:
        figures.append(("Run time", f"{run_seconds:.1f} s (start of run to publishing)"))
    figures += [("Result set", run_id or "?"), ("wsi-assets", __version__)]

    images = _image("Thumbnail", outputs.thumbnail)
    if has_tissue:
        images += _image("Tissue mask over the thumbnail", outputs.tissue_overlay)
    if has_cells:
        images += _image("Nucleus outlines (quality-check regions)", outputs.qc_overlay)
        images += _image("Nucleus classes", outputs.segmentation_dir / CLASS_OVERLAY)
        images += _image("Lymphocytes per mm² over the thumbnail", outputs.segmentation_dir / LYMPHOCYTE_HEATMAP)

    counts, fractions = classes.get("class_counts", {}), classes.get("class_fractions", {})
    densities = classes.get("class_densities_per_mm2", {})
    class_rows = tuple(
        ClassRow(name, class_colour(name), int(count), float(fractions.get(name, 0.0)), float(densities.get(name, 0.0)))
        for name, count in counts.items()
    )

    checks = [_verdict("slide_resolution_fine_enough", resolution_fine_enough(info))]
    if has_cells and tissue is not None:
        checks += [
            _verdict("nuclei_found_in_tissue", nuclei_in_tissue(outputs.cells_parquet, tissue)),
            _verdict("nuclei_density_plausible", nuclei_density(outputs.cells_parquet, tissue, info), warn_only=True),
            _verdict("no_duplicate_nuclei_at_tile_borders", border_duplicates(outputs.cells_parquet, info.mpp)),
        ]
    if classes:
        checks.append(_verdict("class_mix_plausible", class_mix(classes, classes.get("method", "default")), warn_only=True))

    notes = (
        () if has_cells else ("This result set holds no cells (a tissue_mask_only run): run process_slide to segment the slide.",)
    )
    return SlideReport(title, slide_file, stage, tuple(figures), images, class_rows, tuple(checks), notes)
