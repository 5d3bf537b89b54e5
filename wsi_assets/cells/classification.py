"""Giving every stored nucleus a class from its measurements: the trained classifier or the lymphocyte rule.

Re-applying either rewrites the stored cell table's `class` column and nothing else, streamed a
row group at a time, so it takes seconds and never segments again.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.cells.cell_classifier import FEATURE_COLUMNS, CellClassifier, classifier_for
from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS
from wsi_assets.cells.store import ROW_GROUP_CELLS, UnreadableCellTable, embedding_matrix, iter_record_batches
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN
from wsi_assets.cells.nucleus_typer import CNN_COLUMNS, CNN_METHOD, CNN_METHODS, FOREST_CNN_METHOD, cnn_classes, cnn_probabilities

DEFAULT_METHOD = "default"  # the shipped classifier
RULE_METHOD = "rule"  # the lymphocyte rule alone: inflammatory or other
CLASSIFICATION_KEY = "wsi_assets_classification"  # the cell table's metadata key saying how classes were given


class MeasurementsMissing(ValueError):
    """The stored cells have no measurements (segmented by a version without them)."""


@dataclass(frozen=True)
class ClassificationMethod:
    name: str  # "default", "rule" or a classifier file's name
    classify: Callable[[dict[str, np.ndarray]], np.ndarray]
    details: dict

    def as_dict(self) -> dict:
        return {"method": self.name, **self.details}


def classification_method(
    method: str | None,
    rule: LymphocyteRule,
    classifier_path: Path | None = None,
    embedding: dict | None = None,
    cnn: dict | None = None,
) -> ClassificationMethod:
    """The rule, the shipped classifier, or the classifier at `classifier_path` (already confined by the caller),
    for nuclei carrying `embedding` (`store.stored_embedding`; None: none): see `classifier_for`.

    "cnn" reads the network's probabilities stored at segmentation (`nucleus_typer.stored_cnn`, `cnn`),
    "forest+cnn" averages them with the shipped classifier's (`forest_and_cnn_classes`);
    nuclei segmented without them are typed by the shipped classifier, and the details say why.
    """
    if method == RULE_METHOD:
        return ClassificationMethod(RULE_METHOD, rule.classify, {"lymphocyte_rule": rule.as_dict()})
    if method == CNN_METHOD and cnn is not None:
        return ClassificationMethod(
            CNN_METHOD, cnn_classes, {"classifier": cnn.get("model", "nucleus_classifier_cnn"), "cnn": cnn}
        )
    classifier = classifier_for(embedding, classifier_path)
    if method == FOREST_CNN_METHOD and cnn is not None:
        details = {"classifier": f"{classifier.name} + {cnn.get('model', 'nucleus_classifier_cnn')}", "cnn": cnn}
        return ClassificationMethod(FOREST_CNN_METHOD, forest_and_cnn_classes(classifier), details)
    if method in CNN_METHODS:
        fallback = "these nuclei were segmented without the classifier network's probabilities: typed by the shipped classifier; segment the slide again to use the network"
        return ClassificationMethod(DEFAULT_METHOD, classifier.predict, {"classifier": classifier.name, "cnn_fallback": fallback})
    name = DEFAULT_METHOD if classifier_path is None else Path(classifier_path).name
    return ClassificationMethod(name, classifier.predict, {"classifier": classifier.name})


def forest_and_cnn_classes(classifier: CellClassifier) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Classes from the mean of `classifier`'s and the stored network's probabilities (ties go to the class listed first).

    On CoNSeP's held-out tiles the mean beat the forest on every class and the network alone on
    inflammatory: they read different evidence (measurements + embedding; the nucleus's pixels).
    """
    # The forest's classes matched to CLASS_NAMES by name; a class it never predicts gets probability 0.
    order = [classifier.classes.index(name) if name in classifier.classes else -1 for name in CLASS_NAMES]

    def classify(columns: dict[str, np.ndarray]) -> np.ndarray:
        if not len(columns[CNN_COLUMNS[0]]):
            return np.zeros(0, object)
        forest = classifier.probabilities(columns)
        forest = np.where(np.array(order) >= 0, forest[:, np.maximum(order, 0)], 0.0)
        return np.asarray(CLASS_NAMES, object)[np.argmax((forest + cnn_probabilities(columns)) / 2, axis=1)]

    return classify


def measurement_columns(batch: pa.RecordBatch, mpp: float) -> dict[str, np.ndarray]:
    """The features classification reads from a stored batch; area in µm² from the slide's µm/px."""
    columns = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in MEASUREMENT_COLUMNS}
    columns["area_um2"] = batch.column("area_pixels").to_numpy() * mpp * mpp
    features = {name: columns[name] for name in FEATURE_COLUMNS}
    if EMBEDDING_COLUMN in batch.schema.names:
        features[EMBEDDING_COLUMN] = embedding_matrix(batch.column(EMBEDDING_COLUMN))
    for name in CNN_COLUMNS:
        if name in batch.schema.names:
            features[name] = batch.column(name).to_numpy(zero_copy_only=False)
    return features


def classify_stored_cells(cells_path: Path, destination: Path, method: ClassificationMethod, mpp: float) -> Counter:
    """Write the cell table to `destination` with a fresh `class` column; the count of each class."""
    cells_path = Path(cells_path)
    try:
        schema = pq.read_schema(str(cells_path))
    except pa.ArrowException as error:
        raise UnreadableCellTable(f"{cells_path.name} cannot be read ({error}): materialize 'cell_segmentation' again") from None
    missing = [name for name in MEASUREMENT_COLUMNS if name not in schema.names]
    if missing:
        raise MeasurementsMissing(
            f"{cells_path.parent.name}/{cells_path.name} has no nucleus measurements (it was segmented before they existed): run process_slide for this slide"
        )
    kept = pa.schema([field for field in schema if field.name != CLASS_COLUMN])
    metadata = dict(schema.metadata or {})
    metadata[CLASSIFICATION_KEY.encode()] = json.dumps(method.as_dict()).encode()
    out_schema = kept.append(pa.field(CLASS_COLUMN, pa.string())).with_metadata(metadata)
    counts: Counter = Counter({name: 0 for name in CLASS_NAMES})
    with pq.ParquetWriter(str(destination), out_schema, compression="zstd") as writer:
        for batch in iter_record_batches(cells_path, ROW_GROUP_CELLS, with_embedding=True):
            classes = method.classify(measurement_columns(batch, mpp))
            counts.update(classes.tolist())
            columns = [batch.column(name) for name in kept.names] + [pa.array(classes.tolist(), pa.string())]
            writer.write_table(pa.Table.from_arrays(columns, schema=out_schema), row_group_size=ROW_GROUP_CELLS)
    return counts


def class_figures(counts: Counter, tissue_mm2: float) -> dict:
    """Counts, shares and densities per mm² of tissue of each class; lymphocytes/mm² is the inflammatory density."""
    total = sum(counts.values())
    densities = {name: round(counts[name] / tissue_mm2, 1) if tissue_mm2 else 0.0 for name in CLASS_NAMES}
    return {
        "cells": total,
        "tissue_mm2": round(tissue_mm2, 4),
        "class_counts": {name: int(counts[name]) for name in CLASS_NAMES},
        "class_fractions": {name: round(counts[name] / total, 4) if total else 0.0 for name in CLASS_NAMES},
        "class_densities_per_mm2": densities,
        "lymphocytes_per_mm2": densities["inflammatory"],
    }
