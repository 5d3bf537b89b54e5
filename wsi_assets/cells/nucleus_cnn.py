"""The nucleus classifier network: a small CNN that types each nucleus from the pixels around it.

Each nucleus is shown as a CROP×CROP window at the model's 0.5 µm/px centred on its centroid:
RGB plus a 4th channel that is 255 on that nucleus's own pixels (which of the nuclei in the
window is meant), the image reflected where the window leaves it. The network file is ONNX
(`nucleus_classifier_cnn_v*.onnx`, card beside it), run by ONNX Runtime over a tile's nuclei in
batches; training lives in wsi_assets.training.nucleus_cnn. A network trained on stain-normalised
images (its card's `normalisation`) has each image normalised as a whole before it is cropped
(`NucleusCNN.crops`), never crop by crop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wsi_assets.cells.classes import checked_class_names
from wsi_assets.cells.stain_normalisation import normaliser
from wsi_assets.cells.embeddings import label_centroids_of

CROP = 64  # pixels at MPP: 32 µm, a nucleus and its neighbourhood
MPP = 0.5
CHANNELS = 4  # R, G, B, own mask
BATCH = 256
CARD_SUFFIX = ".model_card.json"


class BadNucleusCrops(ValueError):
    """Crops of the wrong shape or type for the network."""


def nucleus_crops(
    rgb: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None, size: int = CROP
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, crops): uint8 (N, 4, size, size) windows centred on each label's centroid, channel 3
    being 255 on that label's own pixels. `rgb` and `labels` share their height and width (the
    caller brings both to MPP); `ids` defaults to every label present."""
    labels = np.asarray(labels)
    if rgb.shape[:2] != labels.shape:
        raise BadNucleusCrops(
            f"the image is {rgb.shape[1]}x{rgb.shape[0]} but the labels are {labels.shape[1]}x{labels.shape[0]}: give both at the same µm/px"
        )
    if ids is None:
        ids = np.unique(labels)
        ids = ids[ids > 0]
    ids = np.asarray(ids, np.int64)
    crops = np.zeros((len(ids), CHANNELS, size, size), np.uint8)
    if not len(ids):
        return ids, crops
    half = size // 2
    padded = cv2.copyMakeBorder(np.ascontiguousarray(rgb, np.uint8), half, half, half, half, cv2.BORDER_REFLECT_101)
    padded_labels = np.pad(labels, half, mode="constant")
    xs, ys = label_centroids_of(labels, ids)
    # window [c - half, c + half) around the centroid pixel, shifted by the padding
    cols = np.floor(xs).astype(np.intp)
    rows = np.floor(ys).astype(np.intp)
    for k, (label, row, col) in enumerate(zip(ids.tolist(), rows.tolist(), cols.tolist())):
        window = padded[row : row + size, col : col + size]
        crops[k, :3] = window.transpose(2, 0, 1)
        crops[k, 3] = (padded_labels[row : row + size, col : col + size] == label) * np.uint8(255)
    return ids, crops


def check_crops(crops: np.ndarray, size: int = CROP) -> np.ndarray:
    """`crops` as the network takes them, or one line saying what shape it needs."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (CHANNELS, size, size):
        raise BadNucleusCrops(
            f"nucleus crops must be (N, {CHANNELS}, {size}, {size}) (RGB + the nucleus's mask, at {MPP} µm/px), got {tuple(crops.shape)}: make them with nucleus_crops"
        )
    if crops.dtype != np.uint8:
        raise BadNucleusCrops(f"nucleus crops must be uint8 0..255, got {crops.dtype}")
    return crops


@dataclass
class NucleusCNN:
    """A loaded network: uint8 crops (N,4,CROP,CROP) -> class probabilities and names."""

    classes: tuple[str, ...]
    info: dict
    session: object = field(repr=False)
    crop: int = CROP

    @property
    def normalisation(self) -> str | None:
        """The stain normalisation its inputs need (None: raw pixels, as v1)."""
        return self.info.get("normalisation") or None

    def crops(self, rgb: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`nucleus_crops` of the image as the network was trained to see it."""
        normalise = normaliser(self.normalisation)
        return nucleus_crops(normalise(rgb) if normalise else rgb, labels, ids, self.crop)

    @property
    def name(self) -> str:
        return f"{self.info.get('name', 'nucleus_classifier_cnn')} v{self.info.get('version', '?')}"

    def probabilities(self, crops: np.ndarray, batch: int = BATCH) -> np.ndarray:
        crops = check_crops(crops, self.crop)
        out = np.zeros((len(crops), len(self.classes)), np.float32)
        for start in range(0, len(crops), batch):
            part = crops[start : start + batch].astype(np.float32)
            out[start : start + batch] = self.session.run(None, {"crops": part})[0]
        return out

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """One class name per crop, object array (N,)."""
        probabilities = self.probabilities(crops)
        return np.asarray(self.classes, object)[np.argmax(probabilities, axis=1)] if len(probabilities) else np.zeros(0, object)

    def classify(self, rgb: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None) -> dict[int, str]:
        """Each label's class, for an image and its labels at MPP."""
        ids, crops = self.crops(rgb, labels, ids)
        return {int(i): str(name) for i, name in zip(ids.tolist(), self.predict_crops(crops).tolist())}


def _session(model: bytes | Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def load_nucleus_cnn(path: Path, threads: int = 1) -> NucleusCNN:
    """The network file and its card (`<stem>.model_card.json` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no nucleus classifier network at {path}")
    card_path = path.with_name(path.stem + CARD_SUFFIX)
    info = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    classes = checked_class_names(info.get("classes", ()), card_path.name) if info else ()
    if not classes:
        raise FileNotFoundError(f"{path.name} has no model card {card_path.name} naming its classes")
    normaliser(info.get("normalisation"))  # a recipe this version cannot apply is refused at load, not per tile
    return NucleusCNN(classes, info, _session(path, threads), int(info.get("crop", CROP)))


def nucleus_cnn_from_bytes(onnx: bytes, classes: tuple[str, ...], info: dict | None = None, threads: int = 1) -> NucleusCNN:
    """A network held in memory (a training's export), for scoring before it is written."""
    return NucleusCNN(tuple(classes), dict(info or {}), _session(onnx, threads), int((info or {}).get("crop", CROP)))
