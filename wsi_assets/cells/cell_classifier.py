"""The cell-type classifier: a random forest over each nucleus's measurements, stored as plain arrays.

The file is a NumPy .npz (no pickle: loading it runs no code) holding every tree's nodes; the
forest votes with the class fractions of the leaves it reaches, as scikit-learn's does. Training
lives in wsi_assets.training.cell_classifier_training; this module only loads and predicts.

Two classifiers ship. The default also reads each nucleus's embedding (`embedding_000`…, the
nucleus network's decoder activations at its centroid: see cells/embeddings.py), which
only the network it was trained on gives; nuclei from any other segmenter (the classical one, a
bring-your-own model) are typed by the second, which reads the measurements alone.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from wsi_assets.cells.classes import checked_class_names
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, same_embedding

FEATURE_COLUMNS = ("area_um2", *MEASUREMENT_COLUMNS)
EMBEDDING_FEATURE_PREFIX = "embedding_"  # feature embedding_007 is channel 7 of the nucleus embedding
SHIPPED_CLASSIFIER = "cell_classifier_v3.npz"  # measurements + the shipped model's embedding
SHIPPED_MEASUREMENT_CLASSIFIER = "cell_classifier_v2.npz"  # measurements alone: any segmenter
_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots", "meta")
PREDICT_BATCH = 50_000


class BadClassifierFile(ValueError):
    """A classifier file that is missing, not a classifier, or names unknown classes or features."""


class ClassifierNeedsEmbedding(BadClassifierFile):
    """A classifier that reads a network's embedding, given nuclei segmented without that network."""


def embedding_feature_names(width: int) -> tuple[str, ...]:
    return tuple(f"{EMBEDDING_FEATURE_PREFIX}{index:03d}" for index in range(width))


def _embedding_channel(name: str) -> int | None:
    suffix = name[len(EMBEDDING_FEATURE_PREFIX) :]
    return int(suffix) if name.startswith(EMBEDDING_FEATURE_PREFIX) and suffix.isdigit() else None


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

    @property
    def embedding(self) -> dict | None:
        """The network whose embedding this classifier reads (embedding_identity), or None."""
        return self.info.get("embedding") if self.needs_embedding else None

    @property
    def needs_embedding(self) -> bool:
        return any(_embedding_channel(name) is not None for name in self.features)

    def feature_matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(N, features) float32: each feature's named column, or `embedding_k` from the (N, width) EMBEDDING_COLUMN."""
        embedding = columns.get(EMBEDDING_COLUMN)
        channels = [_embedding_channel(name) if name not in columns else None for name in self.features]
        wanted = [channel for channel in channels if channel is not None]
        if wanted and embedding is None:
            raise ClassifierNeedsEmbedding(
                f"classifier {self.name} reads the nucleus embedding of {describe_embedding(self.embedding)}, which these nuclei lack: "
                "segment them with that model, or classify with a classifier trained on measurements alone"
            )
        count = len(embedding) if embedding is not None else len(np.asarray(columns[self.features[0]]))
        matrix = np.empty((count, len(self.features)), np.float32)
        named = [k for k, channel in enumerate(channels) if channel is None]
        for k in named:
            matrix[:, k] = columns[self.features[k]]
        if wanted:
            # One gather of every channel read: 192 column-by-column copies cost more than the forest.
            matrix[:, [k for k, channel in enumerate(channels) if channel is not None]] = np.asarray(embedding)[:, wanted]
        return matrix

    def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(N, classes) mean leaf class fractions; missing (NaN) features go left, as at training."""
        matrix = self.feature_matrix(columns)
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


def describe_embedding(embedding: dict | None) -> str:
    return f"{embedding.get('model')} v{embedding.get('version')}" if embedding else "a nucleus network"


@lru_cache(maxsize=4)
def _shipped_classifier(name: str) -> CellClassifier:
    """A packaged classifier, read once per process (segment_and_classify is called image by image)."""
    with resources.as_file(resources.files("wsi_assets.models") / name) as path:
        return load_classifier(Path(path))


def save_classifier(classifier: CellClassifier, path: Path) -> None:
    meta = json.dumps(
        {
            "classes": list(classifier.classes),
            "features": list(classifier.features),
            "depth": classifier.depth,
            "info": classifier.info,
        }
    )
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            feature=classifier.feature,
            threshold=classifier.threshold,
            left=classifier.left,
            right=classifier.right,
            value=classifier.value,
            roots=classifier.roots,
            meta=np.frombuffer(meta.encode("utf-8"), np.uint8),
        )


def classifier_for(embedding: dict | None, path: Path | None = None) -> CellClassifier:
    """The classifier for nuclei whose embedding is `embedding` (None: they have none).

    Without `path`: the shipped default where the nuclei carry the embedding it was trained on,
    else the shipped measurements-only one. With `path`: that file, which must not read an
    embedding the nuclei lack (ClassifierNeedsEmbedding, one line).
    """
    if path is None:
        default = load_classifier()
        return (
            default if same_embedding(default.embedding, embedding) else load_classifier(shipped=SHIPPED_MEASUREMENT_CLASSIFIER)
        )
    chosen = load_classifier(path)
    if chosen.needs_embedding and not same_embedding(chosen.embedding, embedding):
        raise ClassifierNeedsEmbedding(
            f"classifier {Path(path).name} reads the nucleus embedding of {describe_embedding(chosen.embedding)}, but these nuclei were "
            f"segmented {'by ' + describe_embedding(embedding) if embedding else 'without one'}: use that model, or the 'default' classifier"
        )
    return chosen


def load_classifier(path: Path | None = None, shipped: str = SHIPPED_CLASSIFIER) -> CellClassifier:
    """The classifier in `path`, or the shipped one; BadClassifierFile (one line) for anything else."""
    if path is None:
        return _shipped_classifier(shipped)
    path = Path(path)
    shown = path.name
    if not path.is_file():
        raise BadClassifierFile(
            f"classifier file {shown} does not exist: give the path of a .npz written by the cell_classifier asset"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise BadClassifierFile(
                    f"{shown} is not a cell classifier (no {missing[0]!r} array): retrain it with the cell_classifier asset"
                )
            arrays = {name: data[name] for name in _ARRAYS}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except BadClassifierFile:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, KeyError) as error:
        raise BadClassifierFile(
            f"{shown} cannot be read as a cell classifier ({type(error).__name__}): use a .npz written by the cell_classifier asset"
        ) from None
    classes = checked_class_names(meta.get("classes", []), shown)
    features = tuple(meta.get("features", []))
    unknown = [name for name in features if name not in FEATURE_COLUMNS and _embedding_channel(name) is None]
    if unknown or not features or not classes:
        raise BadClassifierFile(
            f"{shown} needs features this version does not measure ({unknown[:1] or 'none listed'}): retrain it with the cell_classifier asset"
        )
    channels = [channel for channel in map(_embedding_channel, features) if channel is not None]
    embedding = (meta.get("info") or {}).get("embedding")
    if channels and not (
        isinstance(embedding, dict) and isinstance(embedding.get("width"), int) and max(channels) < embedding["width"]
    ):
        raise BadClassifierFile(
            f"{shown} reads embedding features but does not say which network's embedding (its info.embedding): retrain it with the cell_classifier asset"
        )
    nodes = len(arrays["feature"])
    if arrays["value"].shape != (nodes, len(classes)) or any(len(arrays[n]) != nodes for n in ("threshold", "left", "right")):
        raise BadClassifierFile(
            f"{shown} is damaged (its node arrays disagree in size): retrain it with the cell_classifier asset"
        )
    inner = arrays["feature"] >= 0
    if (arrays["feature"] >= len(features)).any() or (
        inner & ((arrays["left"] < 0) | (arrays["left"] >= nodes) | (arrays["right"] < 0) | (arrays["right"] >= nodes))
    ).any():
        raise BadClassifierFile(
            f"{shown} is damaged (a node points outside the forest): retrain it with the cell_classifier asset"
        )
    return CellClassifier(
        classes,
        features,
        arrays["feature"].astype(np.int32),
        arrays["threshold"].astype(np.float32),
        arrays["left"].astype(np.int32),
        arrays["right"].astype(np.int32),
        arrays["value"].astype(np.float32),
        arrays["roots"].astype(np.int32),
        int(meta.get("depth", 64)),
        dict(meta.get("info", {})),
    )
