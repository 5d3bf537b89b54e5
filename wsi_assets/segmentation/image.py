"""Segment the nuclei of one in-memory image at any resolution: RGB bright-field, or a fluorescence channel."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.segmentation import relabel_sequential

from wsi_assets.core.quoting import short_repr
from wsi_assets.cells.embeddings import EmbeddingMaps
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.scaling import check_mpp, resample_image, resize_labels

MPP_GIVEN = "given"
MPP_ESTIMATED = "estimated from nucleus size"
MPP_MODEL_DEFAULT = "model default"


@dataclass(frozen=True)
class ImageSegmentation:
    """One image's labels and the choices made for it, recorded as µm/px is."""

    labels: np.ndarray  # int32 (H,W), 0 background, 1..n
    modality: str  # brightfield | fluorescence
    modality_source: str  # "given", "model card", or "auto: ..." (segmentation/modality.py)
    mpp: float  # µm/px the image was segmented as
    mpp_source: str  # "given" | "estimated from nucleus size" | "model default"
    model: str  # "<name> <version>"

    @property
    def info(self) -> dict:
        return {
            "modality": self.modality,
            "modality_source": self.modality_source,
            "mpp": round(float(self.mpp), 4),
            "mpp_source": self.mpp_source,
            "model": self.model,
        }


def segment_image(
    image: np.ndarray, mpp: float | None = None, model: Segmenter | str | Path | None = None, modality: str = "auto"
) -> np.ndarray:
    """Nucleus instance labels (int32, same H,W as `image`, 0 background, 1..n) of one image.

    `image` is RGB (H,W,3) uint8, or float in [0,1] or [0,255] (a float image whose maximum is at
    most 1 is read as [0,1]); or a 2-D fluorescence channel (H,W) of any integer or float dtype.
    `mpp` is its µm per pixel, or None when unknown: it is then estimated from the nucleus size
    (or, with too few nuclei to measure, taken as the model's). The image is resampled to the
    model's µm/px, segmented, and the labels are resampled back by nearest neighbour.
    `modality`: "auto" (2-D, or RGB with bright objects on a dark background, is fluorescence),
    "brightfield" or "fluorescence"; it picks the default model of that family.
    `model` is a `Segmenter`, "default", "classical", "fluorescence-default", or the path of a
    TorchScript model file (a card's `modality` says which family it serves; see
    `wsi_assets.segmentation.registry.get_segmenter`); None means the modality's default model.
    `segment_image_with_info` gives the same labels with the modality and µm/px chosen.
    """
    return segment_image_with_info(image, mpp, model, modality).labels


def segment_image_with_info(
    image: np.ndarray, mpp: float | None = None, model: Segmenter | str | Path | None = None, modality: str = "auto"
) -> ImageSegmentation:
    """`segment_image`, with the modality and µm/px used and where each came from."""
    from wsi_assets.segmentation.modality import FLUORESCENCE, check_modality, decide_modality
    from wsi_assets.segmentation.registry import model_modality

    image = np.asarray(image)
    modality = check_modality(modality)
    if mpp is not None:
        mpp = check_mpp(mpp)
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] == 1):
        image = as_uint8_rgb(image)  # RGB is uint8 or float under either modality, as before
    stated = model_modality(model)
    if modality != "auto" and stated is not None and stated != modality:
        raise ValueError(
            f"model {short_repr(str(model), 120)} is a {stated} model (its card), but modality = {modality}: give a {modality} model or modality {stated}"
        )
    chosen, source = decide_modality(image, modality, stated)
    if chosen == FLUORESCENCE:
        from wsi_assets.segmentation.fluorescence import segment_fluorescence

        result = segment_fluorescence(fluorescence_channel(image), mpp, _fluorescence_model_name(model))
        return ImageSegmentation(result.labels, chosen, source, result.mpp, result.mpp_source, result.model)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            "a 2-D image is one fluorescence channel: give modality auto or fluorescence, or an RGB (H,W,3) image for bright-field"
        )
    rgb = image
    segmenter = get_segmenter(model)
    image_mpp, mpp_source = brightfield_mpp(rgb, mpp, segmenter)
    labels = segment_images([rgb], [image_mpp], segmenter)[0]
    return ImageSegmentation(labels, chosen, source, image_mpp, mpp_source, f"{segmenter.name} {segmenter.version}")


def _fluorescence_model_name(model):
    """The fluorescence model for a name given under either family: "default"/None mean the
    fluorescence default; "classical" the fluorescence floor; files and segmenters as they are."""
    return None if model in (None, "", "default", "learned") else model


def fluorescence_channel(image: np.ndarray) -> np.ndarray:
    """The nuclear channel of a fluorescence image: a 2-D array as it is, RGB averaged over its channels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image must not be empty, got shape {image.shape}")
        return image.astype(np.float32).mean(axis=2)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H,W) fluorescence or (H,W,3) RGB, got {image.ndim} dimensions {image.shape}")
    return image


def brightfield_mpp(rgb: np.ndarray, mpp: float | None, segmenter: Segmenter) -> tuple[float, str]:
    """(µm/px, source) of an RGB image: as given, else from its H&E nucleus size, else the model's."""
    if mpp is not None:
        return check_mpp(mpp), MPP_GIVEN
    from wsi_assets.slides.mpp_estimate import estimate_mpp_from_image
    from wsi_assets.slides.resolution import is_plausible_mpp

    estimate = estimate_mpp_from_image(rgb)
    if estimate is not None and is_plausible_mpp(estimate.mpp):
        return float(estimate.mpp), MPP_ESTIMATED
    return float(segmenter.mpp), MPP_MODEL_DEFAULT


def segment_images(
    rgbs: Sequence[np.ndarray], mpps: Sequence[float], model: Segmenter | str | Path | None = None
) -> list[np.ndarray]:
    """`segment_image` of several images, with one network call per shape at the model's µm/px.

    Images that resample to the same shape are stacked into one `segment_batch` call, which a
    GPU runs as one batch (a batch of small fields then costs about what one field does); on a
    CPU the segmenter still takes them one at a time. The labels are those `segment_image` gives.
    """
    return segment_images_with_embeddings(rgbs, mpps, model)[0]


def segment_images_with_embeddings(
    rgbs: Sequence[np.ndarray], mpps: Sequence[float], model: Segmenter | str | Path | None = None
) -> tuple[list[np.ndarray], list[EmbeddingMaps] | None]:
    """`segment_images`, and each image's embedding maps at the model's µm/px where the model gives them.

    A nucleus at pixel (x, y) of an image at `mpp` sits at (x, y) * mpp / model.mpp in its maps.
    """
    if len(rgbs) != len(mpps):
        raise ValueError(f"segment_images needs one mpp per image: {len(rgbs)} images, {len(mpps)} mpp values")
    images = [as_uint8_rgb(rgb) for rgb in rgbs]
    mpps = [check_mpp(mpp) for mpp in mpps]
    model = get_segmenter(model)
    resampled = [resample_image(image, mpp / float(model.mpp)) for image, mpp in zip(images, mpps)]
    same_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(resampled):
        same_shape[image.shape].append(index)
    results: list[np.ndarray | None] = [None] * len(images)
    embeddings: list[EmbeddingMaps | None] = [None] * len(images)
    for indices in same_shape.values():
        stacked = np.stack([resampled[i] for i in indices])
        labels, maps = segment_with_embeddings(model, stacked)
        for position, (index, image_labels) in enumerate(zip(indices, np.asarray(labels))):
            results[index] = _labels_of_image(image_labels, images[index].shape[:2])
            embeddings[index] = maps[position] if maps is not None else None
    return results, (embeddings if all(m is not None for m in embeddings) else None)


def _labels_of_image(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if labels.shape != shape:
        labels = resize_labels(labels, shape)
    relabelled, _, _ = relabel_sequential(labels.astype(np.int32, copy=False))
    return relabelled.astype(np.int32, copy=False)


def as_uint8_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an RGB image and return it as C-contiguous uint8 (H,W,3)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3:
        raise ValueError(f"rgb must be an (H,W,3) array, got {rgb.ndim} dimensions {rgb.shape}")
    if rgb.shape[2] != 3:
        raise ValueError(f"rgb must have 3 channels (RGB), got {rgb.shape[2]}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb must not be empty, got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    if not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(f"rgb must be uint8 or float, got {rgb.dtype}")
    low, high = float(np.min(rgb)), float(np.max(rgb))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise ValueError(f"float rgb must lie in [0,1] or [0,255], got range [{low}, {high}]")
    scaled = rgb * 255.0 if high <= 1.0 else rgb
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
