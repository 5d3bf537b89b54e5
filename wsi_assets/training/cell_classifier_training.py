"""Training the cell-type classifier from typed nuclei (CoNSeP's layout), held out by whole tile.

A folder in the layout: `images/<stem>.png` (RGB), `labels/<stem>.png` (instance map) and
`types.csv` (`stem,label,type_id` with CoNSeP's ids 1 other, 2 inflammatory, 3 epithelial,
4 spindle; or a `class` column with the class names). Nuclei are measured exactly as on a slide:
at the model's 0.5 µm/px, with stain vectors estimated per image, by default on the learned
segmenter's outlines (what a slide's nuclei have), each typed by the annotated nucleus it pairs with.

    python -m wsi_assets.cli.train_cell_classifier --data ../shared/data/nuclei_train/consep_train \
        --out wsi_assets/models/cell_classifier_v3.npz [--outlines learned|classical|annotated] [--measurements-only]
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsi_assets.cells.cell_classifier import FEATURE_COLUMNS, CellClassifier, embedding_feature_names, save_classifier
from wsi_assets.cells.classes import CLASS_NAMES, CONSEP_TYPE_CLASSES, checked_class_names
from wsi_assets.cells.measurements import measure_labels
from wsi_assets.cells.stain_vectors import estimate_stain_vectors
from wsi_assets.cells.embeddings import EmbeddingMaps, embeddings_at, label_centroids_of
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile

CONSEP_MPP = 0.25  # CoNSeP is 40x (0.25-0.275 µm/px)
MODEL_MPP = 0.5
VERSION = 3


@dataclass
class TypedNuclei:
    features: np.ndarray  # float32 (N, len(names))
    classes: np.ndarray  # object (N,)
    tiles: np.ndarray  # object (N,): the source tile of each nucleus (for the held-out split)
    names: tuple[str, ...] = FEATURE_COLUMNS  # the feature of each column: measurements, then any embedding_k

    def columns(self, rows: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        """The features of `rows` by name, as CellClassifier.predict reads them."""
        return {name: self.features[rows, i] for i, name in enumerate(self.names)}

    def subset(self, rows: np.ndarray) -> "TypedNuclei":
        return TypedNuclei(self.features[rows], self.classes[rows], self.tiles[rows], self.names)


def read_types(folder: Path) -> dict[tuple[str, int], str]:
    path = folder / "types.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder.name} has no types.csv: one row per nucleus, 'stem,label,type_id' (CoNSeP ids) or 'stem,label,class'"
        )
    types = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row["class"] if "class" in row else CONSEP_TYPE_CLASSES.get(int(row["type_id"]), f"type_id {row['type_id']}")
            types[(row["stem"], int(row["label"]))] = name
    checked_class_names(set(types.values()), f"{folder.name}/types.csv")
    return types


PAIR_UM = 3.0  # HoVer-Net's pairing distance (12 px at 40x)


def pair_by_centroid(predicted: np.ndarray, truth: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """One-to-one pairs (predicted index, true index) of (N, 2) points within `radius`, closest first."""
    from scipy.spatial import cKDTree

    if not len(predicted) or not len(truth):
        return []
    distances = cKDTree(predicted).sparse_distance_matrix(cKDTree(truth), radius, output_type="ndarray")
    used_p, used_t, pairs = set(), set(), []
    for k in np.argsort(distances["v"], kind="stable"):
        i, j = int(distances["i"][k]), int(distances["j"][k])
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return pairs


def label_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label ids present and their (x, y) centroids in pixel units (pixel centres at +0.5), as (N, 2)."""
    labels = np.asarray(labels)
    ids = np.flatnonzero(np.bincount(np.maximum(labels, 0).ravel().astype(np.intp)))
    ids = ids[ids > 0]
    return ids, np.stack(label_centroids_of(labels, ids), axis=1)


def _typed_labels(
    labels: np.ndarray, rgb: np.ndarray, stem: str, types: dict, segmenter, model_mpp: float
) -> tuple[np.ndarray, dict[int, str], EmbeddingMaps | None]:
    """The label map to measure, each label's type, and the segmenter's embedding maps (or None):
    the annotation's own labels, or the segmenter's nuclei typed by the annotated nucleus whose
    centroid lies within PAIR_UM."""
    if segmenter is None:
        return labels, {label: name for (s, label), name in types.items() if s == stem}, None
    predicted, maps = segment_with_embeddings(segmenter, rgb[np.newaxis])
    predicted = np.asarray(predicted)[0].astype(np.int32)
    maps = maps[0] if maps is not None else None
    pred_ids, pred_xy = label_centroids(predicted)
    true_ids, true_xy = label_centroids(labels)
    typed = {}
    for i, j in pair_by_centroid(pred_xy, true_xy, PAIR_UM / model_mpp):
        name = types.get((stem, int(true_ids[j])))
        if name is not None:
            typed[int(pred_ids[i])] = name
    return predicted, typed, maps


def typed_nuclei(
    folder: Path,
    source_mpp: float = CONSEP_MPP,
    model_mpp: float = MODEL_MPP,
    limit: int | None = None,
    segmenter=None,
    with_embedding: bool = True,
    tiles: Collection[str] | None = None,
) -> TypedNuclei:
    """Every typed, whole nucleus of the folder (of its crops of `tiles`, when given; the first
    `limit` crops, when given), measured at `model_mpp`.

    With a `segmenter`, the outlines measured are the segmenter's (what a slide's nuclei will
    have), each typed by the annotated nucleus it pairs with; otherwise the annotated outlines.
    Where that segmenter gives embeddings (and `with_embedding`), each nucleus's is added as
    features embedding_000…, read at its centroid as on a slide.
    """
    folder = Path(folder)
    types = read_types(folder)
    stems = sorted({stem for stem, _ in types if tiles is None or consep_tile(stem) in tiles})[:limit]
    embedding = getattr(segmenter, "embedding", None) if with_embedding else None
    names = FEATURE_COLUMNS + (embedding_feature_names(embedding["width"]) if embedding else ())
    features, classes, nucleus_tiles = [], [], []
    scale = source_mpp / model_mpp
    for stem in stems:
        rgb = cv2.cvtColor(cv2.imread(str(folder / "images" / f"{stem}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(folder / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
        size = (max(1, round(labels.shape[1] * scale)), max(1, round(labels.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
        labels, typed, maps = _typed_labels(labels, rgb, stem, types, segmenter, model_mpp)
        # A nucleus cut by the crop edge is measured whole in a neighbouring crop.
        cut = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        ids, columns, area = measure_labels(labels, rgb, model_mpp, estimate_stain_vectors(rgb))
        columns["area_um2"] = area
        matrix = (
            np.stack([np.asarray(columns[c], np.float32) for c in FEATURE_COLUMNS], axis=1)
            if len(ids)
            else np.zeros((0, len(FEATURE_COLUMNS)), np.float32)
        )
        if embedding and len(ids):
            matrix = np.concatenate([matrix, embeddings_at(maps, *label_centroids_of(labels, ids)).astype(np.float32)], axis=1)
        for index, label in enumerate(ids.tolist()):
            name = typed.get(label)
            if name is None or label in cut:
                continue
            features.append(matrix[index])
            classes.append(name)
            nucleus_tiles.append(consep_tile(stem))
    return TypedNuclei(
        np.asarray(features, np.float32).reshape(-1, len(names)),
        np.asarray(classes, object),
        np.asarray(nucleus_tiles, object),
        names,
    )


def forest_arrays(forest, classes: tuple[str, ...], names: tuple[str, ...] = FEATURE_COLUMNS) -> CellClassifier:
    """A fitted scikit-learn RandomForestClassifier as the arrays CellClassifier predicts with."""
    order = [list(forest.classes_).index(name) if name in forest.classes_ else None for name in classes]
    parts, roots, start, depth = [], [], 0, 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        inner = tree.children_left >= 0
        value = tree.value[:, 0, :]
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
        fractions = np.stack([value[:, i] if i is not None else np.zeros(len(value)) for i in order], axis=1)
        parts.append(
            (
                np.where(inner, tree.feature, -1),
                tree.threshold,
                np.where(inner, tree.children_left + start, -1),
                np.where(inner, tree.children_right + start, -1),
                fractions,
            )
        )
        roots.append(start)
        start += tree.node_count
        depth = max(depth, tree.max_depth)
    feature, threshold, left, right, value = (np.concatenate(column) for column in zip(*parts))
    return CellClassifier(
        classes,
        tuple(names),
        feature.astype(np.int32),
        threshold.astype(np.float32),
        left.astype(np.int32),
        right.astype(np.int32),
        value.astype(np.float32),
        np.asarray(roots, np.int32),
        depth + 1,
        {},
    )


def per_class_f1(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    scores = {}
    for name in CLASS_NAMES:
        tp = int(np.sum((truth == name) & (predicted == name)))
        fp = int(np.sum((truth != name) & (predicted == name)))
        fn = int(np.sum((truth == name) & (predicted != name)))
        scores[name] = round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else float("nan")
    return scores


def fit_forest(nuclei: TypedNuclei, trees: int = 60, seed: int = 0) -> CellClassifier:
    from sklearn.ensemble import RandomForestClassifier

    # float32 thresholds at prediction: train on the same float32 values.
    forest = RandomForestClassifier(
        n_estimators=trees, max_depth=14, min_samples_leaf=8, class_weight="balanced_subsample", random_state=seed, n_jobs=1
    )
    forest.fit(nuclei.features.astype(np.float32), nuclei.classes.astype(str))
    return forest_arrays(forest, CLASS_NAMES, nuclei.names)


ANNOTATED = "annotated"


def train_cell_classifier(
    folder: Path,
    out: Path,
    held_out_tiles=HELD_OUT_CONSEP_TILES,
    trees: int = 60,
    seed: int = 0,
    limit: int | None = None,
    outlines: str = "learned",
    with_embedding: bool = True,
) -> dict:
    """Fit on every tile but `held_out_tiles`, score per class on those, write the classifier and its card.

    `outlines`: whose nucleus outlines are measured: a segmenter's name (its nuclei typed by the
    annotated nucleus each pairs with), or "annotated" for the folder's own labels. Where that
    segmenter gives an embedding (and `with_embedding`), the classifier reads it too, and only
    nuclei carrying that same embedding can be typed by it.
    """
    from wsi_assets.segmentation.registry import get_segmenter

    started = time.perf_counter()
    segmenter = None if outlines == ANNOTATED else get_segmenter(outlines, device="cpu")
    nuclei = typed_nuclei(folder, limit=limit, segmenter=segmenter, with_embedding=with_embedding)
    embedding = getattr(segmenter, "embedding", None) if with_embedding and len(nuclei.names) > len(FEATURE_COLUMNS) else None
    held = np.isin(nuclei.tiles, list(held_out_tiles))
    if held.all() or not held.any():
        raise ValueError(
            f"{Path(folder).name}: the held-out tiles {', '.join(held_out_tiles)} must be some but not all of its tiles"
        )
    train = nuclei.subset(~held)
    classifier = fit_forest(train, trees, seed)
    truth = nuclei.classes[held]
    predicted = classifier.predict(nuclei.columns(held))
    card = {
        "name": "cell_classifier",
        "version": VERSION,
        "kind": f"random forest, {trees} trees, depth <= 14, balanced class weights (scikit-learn), stored as arrays",
        "classes": list(CLASS_NAMES),
        "features": list(FEATURE_COLUMNS) + ([f"embedding_000 … embedding_{embedding['width'] - 1:03d}"] if embedding else []),
        **({"embedding": embedding} if embedding else {}),
        "data": {
            "folder": Path(folder).name,
            "measured_at_mpp": MODEL_MPP,
            "outlines": ANNOTATED
            if segmenter is None
            else f"{segmenter.name} v{segmenter.version}, typed by the annotated nucleus within {PAIR_UM} µm",
            "training_nuclei": int((~held).sum()),
            "training_tiles": sorted(set(train.tiles.tolist())),
            "held_out_tiles": list(held_out_tiles),
            "held_out_nuclei": int(held.sum()),
            "class_counts_train": {name: int(np.sum(train.classes == name)) for name in CLASS_NAMES},
        },
        "validation": {
            "what": "per-class F1 over the held-out tiles' nuclei measured on the same outlines as training (annotated, or the segmenter's paired to annotated types)",
            "per_class_f1": per_class_f1(truth, predicted),
            "accuracy": round(float(np.mean(truth == predicted)), 4),
            "class_counts": {name: int(np.sum(truth == name)) for name in CLASS_NAMES},
        },
        "licence": "trained on CoNSeP (Graham et al. 2019, HoVer-Net), Apache-2.0 as stated by third parties; cite the paper",
        "seconds": round(time.perf_counter() - started, 1),
    }
    classifier = CellClassifier(**{**classifier.__dict__, "info": card})
    save_classifier(classifier, out)
    Path(out).with_suffix(".model_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    return card
