"""The cell-type classifier: a random forest over each nucleus's measurements, stored as plain arrays.

The file is a NumPy .npz (no pickle: loading it runs no code) holding every tree's nodes; the
forest votes with the class fractions of the leaves it reaches, as scikit-learn's does. Training
lives in wsi_assets.training.cell_classifier_training; this module only loads and predicts.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from wsi_assets.cells.classes import checked_class_names
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS

FEATURE_COLUMNS = ("area_um2", *MEASUREMENT_COLUMNS)
SHIPPED_CLASSIFIER = "cell_classifier_v2.npz"
_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots", "meta")
PREDICT_BATCH = 50_000


class BadClassifierFile(ValueError):
    """A classifier file that is missing, not a classifier, or names unknown classes or features."""


@dataclass(frozen=True)
class CellClassifier:
    classes: tuple[str, ...]
    features: tuple[str, ...]
    feature: np.ndarray  # int32 (nodes,), -1 at leaves
    threshold: np.ndarray  # float32 (nodes,): go left when value <= threshold
    left: np.ndarray  # int32 (nodes,), global node index
    right: np.ndarray  # int32 (nodes,)
    value: np.ndarray  # float32 (nodes, classes): class fractions at each leaf
    roots: np.ndarray  # int32 (trees,)
    depth: int
    info: dict  # version, training data, scores: what the model card says

    @property
    def name(self) -> str:
        return f"{self.info.get('name', 'cell_classifier')} v{self.info.get('version', '?')}"

    def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(N, classes) mean leaf class fractions; missing (NaN) features go left, as at training."""
        matrix = np.stack([np.asarray(columns[name], np.float32) for name in self.features], axis=1)
        matrix = np.nan_to_num(matrix, nan=-1.0, posinf=1e6, neginf=-1e6)
        result = np.zeros((len(matrix), len(self.classes)), np.float32)
        for start in range(0, len(matrix), PREDICT_BATCH):
            part = matrix[start : start + PREDICT_BATCH]
            nodes = np.repeat(self.roots[:, None], len(part), axis=1)  # (trees, cells)
            rows = np.broadcast_to(np.arange(len(part)), nodes.shape)
            for _ in range(self.depth):
                feature = self.feature[nodes]
                inner = feature >= 0
                if not inner.any():
                    break
                goes_left = part[rows, np.maximum(feature, 0)] <= self.threshold[nodes]
                nodes = np.where(inner, np.where(goes_left, self.left[nodes], self.right[nodes]), nodes)
            result[start : start + len(part)] = self.value[nodes].mean(axis=0)
        return result

    def predict(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """One class name per cell (object array); ties go to the class listed first."""
        if not len(next(iter(columns.values()), [])):
            return np.zeros(0, object)
        return np.asarray(self.classes, object)[self.probabilities(columns).argmax(axis=1)]


def save_classifier(classifier: CellClassifier, path: Path) -> None:
    meta = json.dumps({"classes": list(classifier.classes), "features": list(classifier.features), "depth": classifier.depth, "info": classifier.info})
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle, feature=classifier.feature, threshold=classifier.threshold, left=classifier.left, right=classifier.right,
            value=classifier.value, roots=classifier.roots, meta=np.frombuffer(meta.encode("utf-8"), np.uint8),
        )


def load_classifier(path: Path | None = None) -> CellClassifier:
    """The classifier in `path`, or the shipped one; BadClassifierFile (one line) for anything else."""
    if path is None:
        with resources.as_file(resources.files("wsi_assets.models") / SHIPPED_CLASSIFIER) as shipped:
            return load_classifier(Path(shipped))
    path = Path(path)
    shown = path.name
    if not path.is_file():
        raise BadClassifierFile(f"classifier file {shown} does not exist: give the path of a .npz written by the cell_classifier asset")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise BadClassifierFile(f"{shown} is not a cell classifier (no {missing[0]!r} array): retrain it with the cell_classifier asset")
            arrays = {name: data[name] for name in _ARRAYS}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except BadClassifierFile:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, KeyError) as error:
        raise BadClassifierFile(f"{shown} cannot be read as a cell classifier ({type(error).__name__}): use a .npz written by the cell_classifier asset") from None
    classes = checked_class_names(meta.get("classes", []), shown)
    features = tuple(meta.get("features", []))
    unknown = [name for name in features if name not in FEATURE_COLUMNS]
    if unknown or not features or not classes:
        raise BadClassifierFile(f"{shown} needs features this version does not measure ({unknown[:1] or 'none listed'}): retrain it with the cell_classifier asset")
    nodes = len(arrays["feature"])
    if arrays["value"].shape != (nodes, len(classes)) or any(len(arrays[n]) != nodes for n in ("threshold", "left", "right")):
        raise BadClassifierFile(f"{shown} is damaged (its node arrays disagree in size): retrain it with the cell_classifier asset")
    inner = arrays["feature"] >= 0
    if (arrays["feature"] >= len(features)).any() or (inner & ((arrays["left"] < 0) | (arrays["left"] >= nodes) | (arrays["right"] < 0) | (arrays["right"] >= nodes))).any():
        raise BadClassifierFile(f"{shown} is damaged (a node points outside the forest): retrain it with the cell_classifier asset")
    return CellClassifier(
        classes, features, arrays["feature"].astype(np.int32), arrays["threshold"].astype(np.float32), arrays["left"].astype(np.int32),
        arrays["right"].astype(np.int32), arrays["value"].astype(np.float32), arrays["roots"].astype(np.int32), int(meta.get("depth", 64)),
        dict(meta.get("info", {})),
    )
