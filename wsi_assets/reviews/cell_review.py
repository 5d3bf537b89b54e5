"""One slide's review: the reviewer's cells against the model's inside the reviewed regions, as figures and a list of disagreements."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from wsi_assets.cells.classes import CLASS_COLOURS
from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.reviews.agreement import cohen_kappa, confusion_matrix, f1, per_class_f1
from wsi_assets.reviews.matching import RESHAPED_IOU, match_cells
from wsi_assets.reviews.model_cells import ModelCells, inside, read_model_cells
from wsi_assets.reviews.review_geojson import ReviewedCells

# HoVer-Net pairs nuclei whose centroids lie within 12 px at 0.25 µm/px (its 40x): 3 µm.
PAIRING_RADIUS_UM = 3.0
MAX_SKIPPED_LISTED = 100  # skipped features named in cell_review.json; the count is always whole
DISAGREEMENT_COLUMNS = (
    "kind",
    "model_cell_id",
    "reviewer_feature",
    "centroid_x",
    "centroid_y",
    "model_class",
    "reviewer_class",
    "iou",
)


@dataclass
class CellReviewResult:
    figures: dict
    disagreements: list[dict] = field(default_factory=list)
    model: ModelCells | None = None
    reviewer_polygons: list = field(default_factory=list)
    area: object = None  # the reviewed area (shapely), None for the whole slide
    pairs: object = None  # the CellPairs behind the figures, for the overlay


def reviewed_area(reviewer: ReviewedCells):
    return shapely.union_all(reviewer.regions) if reviewer.regions else None


def compare_cells(model: ModelCells, reviewer: ReviewedCells, radius_px: float, area=None) -> CellReviewResult:
    """Pair the model's cells with the reviewer's (both already limited to `area`) and measure agreement."""
    keep = inside(reviewer.centroids, area)
    r_polygons = [p for p, k in zip(reviewer.polygons, keep) if k]
    r_classes = [c for c, k in zip(reviewer.classes, keep) if k]
    r_ids = [i for i, k in zip(reviewer.feature_ids, keep) if k]
    r_xy = reviewer.centroids[keep] if len(keep) else np.empty((0, 2))
    pairs = match_cells(model.polygons, model.centroids, r_polygons, r_xy, radius_px)
    tp, fp, fn = len(pairs.model), len(pairs.model_only), len(pairs.reviewer_only)
    # Classes are compared only where both sides name one: the model's table may have no class column yet.
    classed = model.has_classes and any(c is not None for c in r_classes)
    both = [(model.classes[m], r_classes[r]) for m, r in zip(pairs.model, pairs.reviewer)]
    both = [(a, b) for a, b in both if a is not None and b is not None]
    labels = list(CLASS_COLOURS) + sorted({c for pair in both for c in pair} - set(CLASS_COLOURS))
    figures = {
        "reviewed_regions": len(reviewer.regions),
        "reviewed_area_px": float(area.area) if area is not None else None,
        "pairing_radius_px": radius_px,
        "model_cells": len(model.polygons),
        "reviewer_cells": len(r_polygons),
        "paired": tp,
        "added": fn,
        "deleted": fp,
        "reshaped": int(np.sum(pairs.iou < RESHAPED_IOU)),
        "reclassified": sum(1 for a, b in both if a != b),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "detection_f1": f1(tp, fp, fn),
        "mean_iou": float(pairs.iou.mean()) if tp else None,
        "classes_compared": classed,
        # Features the import skipped (no area), by id: the rest of the file was used.
        "skipped_features": len(reviewer.skipped),
        "skipped": list(reviewer.skipped[:MAX_SKIPPED_LISTED]),
    }
    if classed:
        matrix = confusion_matrix([a for a, _ in both], [b for _, b in both], labels)
        used = [i for i in range(len(labels)) if matrix[i].sum() or matrix[:, i].sum()]
        figures["class_labels"] = [labels[i] for i in used]
        figures["confusion_matrix"] = matrix[np.ix_(used, used)].tolist()  # rows: model, columns: reviewer
        figures["cohen_kappa"] = cohen_kappa([a for a, _ in both], [b for _, b in both], labels)
        figures["class_f1"] = per_class_f1(model.classes, r_classes, pairs.model, pairs.reviewer, figures["class_labels"])
    else:
        figures["classes_not_compared_because"] = (
            "the model's cell table has no class column"
            if not model.has_classes
            else "the reviewer's cells have no classification"
        )
    rows = []
    for m in pairs.model_only:
        x, y = model.centroids[m]
        rows.append(_row("deleted", model.cell_ids[m], "", x, y, model.classes[m], None, None))
    for r in pairs.reviewer_only:
        rows.append(_row("added", None, r_ids[r], r_xy[r][0], r_xy[r][1], None, r_classes[r], None))
    for m, r, iou in zip(pairs.model, pairs.reviewer, pairs.iou):
        reclassified = model.classes[m] is not None and r_classes[r] is not None and model.classes[m] != r_classes[r]
        for kind, happened in (("reclassified", reclassified), ("reshaped", iou < RESHAPED_IOU)):
            if happened:
                rows.append(_row(kind, model.cell_ids[m], r_ids[r], r_xy[r][0], r_xy[r][1], model.classes[m], r_classes[r], iou))
    return CellReviewResult(figures, rows, model, r_polygons, area, pairs)


def _row(kind, cell_id, feature, x, y, model_class, reviewer_class, iou) -> dict:
    return {
        "kind": kind,
        "model_cell_id": "" if cell_id is None else int(cell_id),
        "reviewer_feature": feature,
        "centroid_x": round(float(x), 2),
        "centroid_y": round(float(y), 2),
        "model_class": model_class or "",
        "reviewer_class": reviewer_class or "",
        "iou": "" if iou is None else round(float(iou), 4),
    }


def review_slide_cells(cells_parquet: Path, reviewer: ReviewedCells, mpp: float) -> CellReviewResult:
    """The whole comparison for one slide: model cells read from its stored table inside the reviewed regions."""
    area = reviewed_area(reviewer)
    model = read_model_cells(cells_parquet, area)
    return compare_cells(model, reviewer, PAIRING_RADIUS_UM / mpp, area)


def write_review_files(folder: Path, result: CellReviewResult, provenance: dict) -> tuple[Path, Path]:
    """cell_review.json (figures + provenance) and disagreements.csv (one row per disagreement), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = write_text_atomic(
        folder / "cell_review.json", json.dumps({**result.figures, "provenance": provenance}, indent=2, default=str)
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, DISAGREEMENT_COLUMNS)
    writer.writeheader()
    writer.writerows(result.disagreements)
    table = write_text_atomic(folder / "disagreements.csv", text.getvalue())
    return summary, table
