"""The nucleus classifier network's training crops, cut once from a typed folder (CoNSeP's layout).

Every typed nucleus of every crop gives a window twice: once with its annotated outline as the
mask channel, once with the learned segmenter's outline that pairs with it (centroids within
PAIR_UM), which is what a slide's nuclei carry. Windows are cut a little larger than the network's
input (CACHE) so that training can shift and rescale them; the centre CROP of a window is exactly
what `cells.nucleus_cnn.nucleus_crops` gives. Held-out tiles are cut too (for scoring), marked.
The segmenter reads the crop as it is; the windows are cut from the crop after its stain
normalisation (`normalisation`, recorded in the cache), as the network's inference does.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.nucleus_cnn import MPP, nucleus_crops
from wsi_assets.cells.stain_normalisation import normaliser
from wsi_assets.segmentation.image import resample_image, resize_labels
from wsi_assets.training.cell_classifier_training import CONSEP_MPP, PAIR_UM, label_centroids, pair_by_centroid, read_types
from wsi_assets.training.split import consep_tile

CACHE = 80
ANNOTATED, FOUND = 0, 1  # the `outline` of a cached crop


def read_crop(folder: Path, stem: str, source_mpp: float = CONSEP_MPP) -> tuple[np.ndarray, np.ndarray]:
    """A crop's RGB and annotated labels, both at MPP (as segment_and_classify resamples)."""
    bgr = cv2.imread(str(folder / "images" / f"{stem}.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{folder.name}/images/{stem}.png is missing or not an image")
    rgb = resample_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), source_mpp / MPP)
    labels = cv2.imread(str(folder / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32)
    return rgb, resize_labels(labels, rgb.shape[:2])


def found_labels(segmenter, rgb: np.ndarray) -> np.ndarray:
    return np.asarray(segmenter.segment_batch(rgb[np.newaxis]))[0].astype(np.int32)


def typed_found(found: np.ndarray, truth: np.ndarray, typed: dict[int, str]) -> dict[int, str]:
    """Each found label paired (centroids within PAIR_UM, one to one) with a typed annotated one, and that type."""
    pred_ids, pred_xy = label_centroids(found)
    true_ids, true_xy = label_centroids(truth)
    out = {}
    for i, j in pair_by_centroid(pred_xy, true_xy, PAIR_UM / MPP):
        name = typed.get(int(true_ids[j]))
        if name is not None:
            out[int(pred_ids[i])] = name
    return out


def build_cache(
    folder: Path, out: Path, segmenter=None, limit: int | None = None, normalisation: str | None = None, log=print
) -> Path:
    """Write every typed nucleus's window (annotated outline; and the segmenter's, when given) to `out` (.npz)."""
    folder = Path(folder)
    types = read_types(folder)
    stems = sorted({stem for stem, _ in types})[:limit]
    normalise = normaliser(normalisation)
    crops, classes, tiles, outlines, stem_index = [], [], [], [], []
    started = time.perf_counter()
    for k, stem in enumerate(stems):
        rgb, truth = read_crop(folder, stem)
        typed = {label: name for (s, label), name in types.items() if s == stem}
        # a nucleus smaller than a pixel at MPP vanishes when the labels are resampled
        present = set(np.unique(truth).tolist())
        sources = [(ANNOTATED, truth, {label: name for label, name in typed.items() if label in present})]
        if segmenter is not None:
            found = found_labels(segmenter, rgb)
            sources.append((FOUND, found, typed_found(found, truth, typed)))
        shown = normalise(rgb) if normalise else rgb
        for outline, labels, names in sources:
            ids = np.asarray(sorted(names), np.int64)
            ids, windows = nucleus_crops(shown, labels, ids, CACHE)
            crops.append(windows)
            classes += [CLASS_NAMES.index(names[int(i)]) for i in ids]
            tiles += [consep_tile(stem)] * len(ids)
            outlines += [outline] * len(ids)
            stem_index += [k] * len(ids)
        if k % 50 == 0:
            log(f"cache: {k + 1}/{len(stems)} crops, {sum(len(c) for c in crops)} windows, {time.perf_counter() - started:.0f} s")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".partial.npz")
    np.savez(
        temporary,
        crops=np.concatenate(crops),
        classes=np.asarray(classes, np.int8),
        tiles=np.asarray(tiles),
        outlines=np.asarray(outlines, np.int8),
        stems=np.asarray(stems),
        stem_index=np.asarray(stem_index, np.int32),
        class_names=np.asarray(CLASS_NAMES),
        normalisation=np.asarray(normalisation or ""),
    )
    temporary.replace(out)
    return out


def cache_normalisation(cache: dict) -> str | None:
    """The stain normalisation a cache's windows were cut with (None: raw pixels, as before it was recorded)."""
    return str(cache["normalisation"]) if "normalisation" in cache and str(cache["normalisation"]) else None


def load_cache(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        cache = {name: data[name] for name in data.files}
    if tuple(cache["class_names"].tolist()) != CLASS_NAMES:
        raise ValueError(
            f"{Path(path).name} was cut for classes {cache['class_names'].tolist()}, not {list(CLASS_NAMES)}: delete it to cut it again"
        )
    return cache


def centre(windows: np.ndarray, size: int) -> np.ndarray:
    """The centre size×size of (N, C, CACHE, CACHE) windows: nucleus_crops(…, size) of the same nuclei."""
    start = (windows.shape[-1] - size) // 2
    return windows[..., start : start + size, start : start + size]
