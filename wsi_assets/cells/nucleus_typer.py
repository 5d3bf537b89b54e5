"""The nucleus classifier network run during segmentation, for a branch whose `classifier:` is "cnn" or "forest+cnn".

Segmentation already holds each tile's pixels and label map at the model's µm/px; typing the
tile's owned nuclei there costs no second read of the slide, and classification stays pixel-free:
it takes the argmax of the stored probabilities (`cnn_classes`). The tile is normalised once (when
the network's card names a recipe) and its nuclei go through the network in batches. Only such a
branch's cell table carries the CNN_COLUMNS and the CNN_KEY metadata; every other table is
unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, NucleusMeasurer
from wsi_assets.cells.nucleus_cnn import MPP, NucleusCNN, load_nucleus_cnn
from wsi_assets.cells.store import UnreadableCellTable

CNN_METHOD = "cnn"
FOREST_CNN_METHOD = "forest+cnn"  # the mean of the shipped forest's and the network's class probabilities
CNN_METHODS = (CNN_METHOD, FOREST_CNN_METHOD)  # the choices that need the network's probabilities stored
# One probability per class of the fixed vocabulary, in its order, whatever the network's order.
CNN_COLUMNS = tuple(f"cnn_{name}" for name in CLASS_NAMES)
CNN_KEY = "wsi_assets_cnn"  # the cell table's metadata key naming the network that filled CNN_COLUMNS
_SHIPPED_NAME = re.compile(r"nucleus_classifier_cnn_v(\d+)\.onnx")


def newest_shipped_cnn() -> Path:
    """The shipped network with the highest version (`nucleus_classifier_cnn_v<N>.onnx` in wsi_assets/models)."""
    folder = Path(str(resources.files("wsi_assets.models")))
    versions = {int(match.group(1)): path for path in folder.iterdir() if (match := _SHIPPED_NAME.fullmatch(path.name))}
    if not versions:
        raise FileNotFoundError(
            f"no nucleus classifier network (nucleus_classifier_cnn_v*.onnx) in {folder}: reinstall wsi-assets"
        )
    return versions[max(versions)]


@dataclass(frozen=True)
class NucleusTyper:
    """Class probabilities of a tile's nuclei from `model`, for label maps at `um_per_px`."""

    model: NucleusCNN
    um_per_px: float = MPP
    file: str = ""

    def identity(self) -> dict:
        return {
            "model": self.model.name,
            "file": self.file,
            "normalisation": self.model.normalisation,
            "classes": list(self.model.classes),
        }

    def __call__(self, labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
        """One float32 array per CNN_COLUMNS entry, in the order of `ids`."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return {name: np.zeros(0, np.float32) for name in CNN_COLUMNS}
        labels, rgb = self._at_model_mpp(np.asarray(labels), np.asarray(rgb))
        _, crops = self.model.crops(rgb, labels, ids)
        probabilities = self.model.probabilities(crops)
        columns = {name: np.zeros(len(ids), np.float32) for name in CNN_COLUMNS}
        for k, name in enumerate(self.model.classes):
            columns[f"cnn_{name}"] = probabilities[:, k].astype(np.float32)
        return columns

    def _at_model_mpp(self, labels: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if rgb.shape[:2] != labels.shape:
            rgb = cv2.resize(rgb, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_AREA)
        factor = self.um_per_px / MPP
        if abs(factor - 1.0) < 1e-6:
            return labels, rgb
        size = (max(1, round(labels.shape[1] * factor)), max(1, round(labels.shape[0] * factor)))
        # Nearest keeps label ids whole; a nucleus too small to survive the rescale gets zero crops' mask.
        resized = cv2.resize(labels.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
        return resized, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class TypingMeasurer:
    """A NucleusMeasurer whose tables also carry the network's CNN_COLUMNS (segment_slide's `measurer`)."""

    measurer: NucleusMeasurer
    typer: NucleusTyper

    @property
    def columns(self) -> tuple[str, ...]:
        return (*MEASUREMENT_COLUMNS, *CNN_COLUMNS)

    def store_metadata(self) -> dict[str, str]:
        return {CNN_KEY: json.dumps(self.typer.identity())}

    def __call__(self, labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray, outlines: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {**self.measurer(labels, rgb, ids, outlines), **self.typer(labels, rgb, ids)}


def typing_measurer(measurer: NucleusMeasurer, model_path: Path | None = None, threads: int = 1) -> TypingMeasurer:
    """`measurer` plus the network at `model_path` (default: the newest shipped one)."""
    path = Path(model_path) if model_path is not None else newest_shipped_cnn()
    return TypingMeasurer(measurer, NucleusTyper(load_nucleus_cnn(path, threads), measurer.um_per_px, path.name))


def stored_cnn(path: Path) -> dict | None:
    """The network whose probabilities the stored cells carry (NucleusTyper.identity), or None when they carry none."""
    try:
        schema = pq.read_schema(str(path))
    except pa.ArrowException as error:
        raise UnreadableCellTable(f"{Path(path).name} cannot be read ({error}): materialize 'cell_segmentation' again") from None
    if any(name not in schema.names for name in CNN_COLUMNS):
        return None
    text = (schema.metadata or {}).get(CNN_KEY.encode())
    return json.loads(text) if text else {}


def cnn_probabilities(columns: dict[str, np.ndarray]) -> np.ndarray:
    """(N, CLASS_NAMES) float32: the stored CNN_COLUMNS side by side."""
    return np.stack([np.asarray(columns[name], np.float32) for name in CNN_COLUMNS], axis=1)


def cnn_classes(columns: dict[str, np.ndarray]) -> np.ndarray:
    """One class name per nucleus (object array): the most probable of the stored CNN_COLUMNS; ties go to the class listed first."""
    if not len(columns[CNN_COLUMNS[0]]):
        return np.zeros(0, object)
    return np.asarray(CLASS_NAMES, object)[np.argmax(cnn_probabilities(columns), axis=1)]
