"""Segment and classify the nuclei of one in-memory RGB image: the public `segment_and_classify`."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential

from wsi_assets.cells.cell_classifier import CellClassifier, classifier_for
from wsi_assets.cells.embeddings import EMBEDDING_COLUMN, embeddings_at, label_centroids_of
from wsi_assets.cells.measurements import measure_labels
from wsi_assets.cells.stain_vectors import estimate_stain_vectors
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.image import as_uint8_rgb
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.scaling import check_mpp, resample_image, resize_labels


def segment_and_classify(
    rgb: np.ndarray, mpp: float, model=None, classifier: CellClassifier | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """(labels, classes): int32 instance labels (0 background, 1..n, same H,W as `rgb`) and each label's class.

    The same steps as process_slide: the image at the model's µm/px, the default segmenter and
    the classifier for its nuclei (`classifier_for`: the shipped default where the model gives the
    embedding it reads), measurements with stain vectors estimated on the image.
    """
    image = as_uint8_rgb(rgb)
    mpp = check_mpp(mpp)
    segmenter = get_segmenter(model)
    classifier = classifier or classifier_for(getattr(segmenter, "embedding", None))
    model_labels, _, ids, columns = measured_nuclei(image, mpp, segmenter)
    predicted = classifier.predict(columns) if len(ids) else np.zeros(0, object)
    return labels_and_classes(model_labels, image.shape[:2], ids, predicted)


def measured_nuclei(image: np.ndarray, mpp: float, segmenter, typer=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(labels, pixels, ids, columns) at the segmenter's µm/px: the nuclei of a uint8 RGB image, each
    measured (stain vectors estimated on the image), with its embedding where the segmenter gives
    one and, with a `typer` (cells.nucleus_typer), the network's class probabilities."""
    resampled = resample_image(image, mpp / float(segmenter.mpp))
    labels_batch, maps = segment_with_embeddings(segmenter, resampled[np.newaxis])
    model_labels = np.asarray(labels_batch)[0].astype(np.int32)
    if resampled.shape[:2] != model_labels.shape:
        resampled = resample_image(resampled, model_labels.shape[0] / resampled.shape[0])
    ids, columns, area_um2 = measure_labels(model_labels, resampled, float(segmenter.mpp), estimate_stain_vectors(resampled))
    columns["area_um2"] = area_um2
    if maps is not None and len(ids):
        columns[EMBEDDING_COLUMN] = embeddings_at(maps[0], *label_centroids_of(model_labels, ids))
    if typer is not None:
        columns.update(typer(model_labels, resampled, ids))
    return model_labels, resampled, ids, columns


def labels_and_classes(
    model_labels: np.ndarray, shape: tuple[int, ...], ids: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, dict[int, str]]:
    """The labels back at the image's size, numbered 1..n, and each surviving label's class."""
    labels = model_labels if model_labels.shape == shape else resize_labels(model_labels, shape)
    relabelled, forward, _ = relabel_sequential(labels)
    # A nucleus too small to survive resizing back has no label, so no class either.
    present = set(np.unique(relabelled).tolist()) - {0}
    classes = {
        int(forward[old]): str(name) for old, name in zip(ids.tolist(), predicted.tolist()) if int(forward[old]) in present
    }
    return relabelled.astype(np.int32, copy=False), classes
