"""The cell classifier refitted from the reviewer's classes, and scored against the branch's current one on held-out cells.

A random forest cannot continue training, so the new one is fitted on the reviewed cells plus a
sample of its base data (CoNSeP's typed nuclei) so that classes the reviews rarely show are still
known. Cells are measured exactly as on a slide: at the model's µm/px, with stain vectors
estimated per tile; a cell cut by the tile edge is left out. Where the branch's nucleus model gives
embeddings, each cell's is added (the base data then uses that model's outlines, as the shipped
classifier's training does), and the refitted classifier reads that model's embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.cells.cell_classifier import FEATURE_COLUMNS, CellClassifier, embedding_feature_names
from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.measurements import measure_labels
from wsi_assets.cells.stain_vectors import estimate_stain_vectors
from wsi_assets.finetuning.review_tiles import ReviewedTile
from wsi_assets.finetuning.slide_grid import reviewed_cell_features
from wsi_assets.cells.embeddings import embeddings_at, label_centroids_of
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.slide import TilingSettings
from wsi_assets.training.cell_classifier_training import (
    TypedNuclei,
    fit_forest,
    read_types,
    typed_nuclei,
)
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile

BASE_TILES = 4  # CoNSeP training tiles mixed in with reviewed cells (64 crops, ~1,400 typed nuclei)
MIN_REVIEWED_CLASSES = 20  # fewer classified cells than this teach a forest nothing


def reviewed_nuclei(
    tiles: list[ReviewedTile],
    mpp: float,
    segmenter=None,
    stains_of=None,
    tiling: TilingSettings = TilingSettings(),
    progress=None,
) -> TypedNuclei:
    """Each whole reviewed cell with one of the fixed classes: its measurements and the reviewer's class.

    With a `segmenter` that gives embeddings, each cell's embedding too, read at the reviewer's
    outline's centroid (as a slide's nucleus is read at its own). Tiles read from a slide are
    measured as a slide run measures (slide_grid.reviewed_cell_features; `stains_of(tile)` gives
    the slide's stain vectors); a tile given as pixels alone is measured on its own pixels.
    """
    embedding = getattr(segmenter, "embedding", None)
    names = FEATURE_COLUMNS + (embedding_feature_names(embedding["width"]) if embedding else ())
    if tiles and all(t.source is not None for t in tiles):
        found = reviewed_cell_features(
            tiles, mpp, stains_of or (lambda t: estimate_stain_vectors(t.rgb)), segmenter if embedding else None, tiling, progress
        )
        if not len(found.classes):
            return TypedNuclei(np.zeros((0, len(names)), np.float32), found.classes, found.tiles, names)
        matrix = np.stack([np.asarray(found.columns[c], np.float32) for c in FEATURE_COLUMNS], axis=1)
        if embedding:
            matrix = np.concatenate([matrix, found.embeddings.astype(np.float32)], axis=1)
        keep = np.isin(found.classes, CLASS_NAMES)
        return TypedNuclei(matrix[keep], found.classes[keep], found.tiles[keep], names)
    features, classes, sources = [], [], []
    for tile in tiles:
        if not tile.classes:
            continue
        ids, columns, area = measure_labels(tile.labels, tile.rgb, mpp, estimate_stain_vectors(tile.rgb))
        columns["area_um2"] = area
        matrix = (
            np.stack([np.asarray(columns[c], np.float32) for c in FEATURE_COLUMNS], axis=1)
            if len(ids)
            else np.zeros((0, len(FEATURE_COLUMNS)), np.float32)
        )
        if embedding and len(ids):
            maps = segment_with_embeddings(segmenter, tile.rgb[np.newaxis])[1][0]
            matrix = np.concatenate(
                [matrix, embeddings_at(maps, *label_centroids_of(tile.labels, ids)).astype(np.float32)], axis=1
            )
        edge = set(np.unique(np.concatenate([tile.labels[0], tile.labels[-1], tile.labels[:, 0], tile.labels[:, -1]])).tolist())
        for index, label in enumerate(ids.tolist()):
            name = tile.classes.get(label)
            if name in CLASS_NAMES and label not in edge:
                features.append(matrix[index])
                classes.append(name)
                sources.append(f"{tile.slide}:{tile.box}")
    return TypedNuclei(
        np.asarray(features, np.float32).reshape(-1, len(names)), np.asarray(classes, object), np.asarray(sources, object), names
    )


def has_typed_base(folder: Path | None) -> bool:
    return folder is not None and (Path(folder) / "types.csv").is_file()


def base_tiles(folder: Path, held_out: bool = False) -> list[str]:
    """The base data's tiles for training (or, `held_out`, its validation tiles), in name order."""
    every = sorted({consep_tile(stem) for stem, _ in read_types(Path(folder))})
    return [tile for tile in every if (tile in HELD_OUT_CONSEP_TILES) == held_out]


def base_typed_nuclei(folder: Path | None, tiles: int | None = BASE_TILES, segmenter=None) -> TypedNuclei | None:
    """The first `tiles` training tiles of the base data (None: all of them), typed (with the
    segmenter's outlines and embedding when given); never its held-out tiles."""
    if not has_typed_base(folder) or (tiles is not None and tiles <= 0):
        return None
    return typed_nuclei(folder, segmenter=segmenter, tiles=base_tiles(folder)[:tiles])


def base_held_out_nuclei(folder: Path, segmenter=None) -> TypedNuclei:
    """The base data's held-out tiles, typed as base_typed_nuclei types its training tiles."""
    return typed_nuclei(folder, segmenter=segmenter, tiles=base_tiles(folder, held_out=True))


def refit_classifier(reviewed: TypedNuclei, base: TypedNuclei | None, trees: int = 60, seed: int = 0) -> CellClassifier:
    if base is not None and len(base.classes) and base.names == reviewed.names:
        reviewed = TypedNuclei(
            np.concatenate([reviewed.features, base.features]),
            np.concatenate([reviewed.classes, base.classes]),
            np.concatenate([reviewed.tiles, base.tiles]),
            reviewed.names,
        )
    return fit_forest(reviewed, trees, seed)


def class_agreement(classifier: CellClassifier, nuclei: TypedNuclei) -> dict:
    """Accuracy and macro F1 over the classes the reviewer used, on these cells."""
    predicted = classifier.predict(nuclei.columns())
    truth = nuclei.classes
    per_class = {}
    for name in sorted(set(truth.tolist())):
        tp = int(np.sum((truth == name) & (predicted == name)))
        wrong = int(np.sum((truth != name) & (predicted == name))) + int(np.sum((truth == name) & (predicted != name)))
        per_class[name] = round(2 * tp / (2 * tp + wrong), 4)
    return {
        "accuracy": round(float(np.mean(truth == predicted)), 4) if len(truth) else 0.0,
        "macro_f1": round(float(np.mean(list(per_class.values()))), 4) if per_class else 0.0,
        "per_class_f1": per_class,
        "cells": len(truth),
    }
