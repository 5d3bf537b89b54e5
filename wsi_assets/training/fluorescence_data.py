"""Fluorescence nucleus images for training: loading, the experiment-held-out split, augmented crops.

The set is `<shared data>/nuclei_fluo_train/dsb2018_fluorescence/` (DSB 2018 stage 1, CC0):
`images/<stem>.png` (uint8 grayscale, bright nuclei on dark) and `labels/<stem>.png` (uint16
instances). Its pixel size is unknown and varies by experiment, so crops are not put at a µm/px
but at a nucleus size: each image is zoomed so that its median nucleus is `reference_diameter`
pixels across, times a random factor (`scale_range`), which teaches the network the spread of
sizes that a wrong size estimate at inference will give it.

Many DSB images are crops of one experiment, so the validation split holds out whole
experiments. DSB does not name them; an experiment here is a cluster of images of one size whose
nucleus diameter and intensity statistics agree (`experiment_clusters`). The split is fixed in
`fluorescence_split.csv` beside this module (written once by `write_split`), so it does not move
with a library's clustering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wsi_assets.core.shared_data import shared_data_dir
from wsi_assets.segmentation.image import resize_labels
from wsi_assets.training.data import read_labels, sample_crops

SPLIT_FILE = Path(__file__).with_name("fluorescence_split.csv")
# Ward distance at which the standardised image statistics of one image size are cut into experiments.
EXPERIMENT_CUT = 8.0
# Whole experiments held out (83 images, 16%): clusters that differ from every training cluster of
# their size in nucleus size or density (the 360x360 clusters differ only in brightness, so all
# of them train), and the only 256x320 one.
HELD_OUT_EXPERIMENTS = ("256x256-e5", "256x320-e1", "520x696-e3")
# Normalisation percentiles: the module does the same (fluorescence_model.percentile_normalise).
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
REFERENCE_DIAMETER_PX = 16.0  # median nucleus diameter in model pixels (the H&E model sees ~10)
SCALE_RANGE = (0.6, 1.6)  # crops zoomed so nuclei are this many times the reference diameter


def default_fluorescence_data() -> Path:
    return shared_data_dir() / "nuclei_fluo_train" / "dsb2018_fluorescence"


@dataclass
class FluoImage:
    stem: str
    experiment: str
    gray: np.ndarray  # uint8 (H,W), as stored
    labels: np.ndarray  # int32 (H,W)
    diameter: float  # median equivalent diameter of the labelled nuclei, pixels


def median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size else REFERENCE_DIAMETER_PX


def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2).astype(image.dtype)
    return image


def list_stems(folder: Path) -> list[str]:
    folder = Path(folder)
    stems = sorted(p.stem for p in (folder / "images").glob("*.png") if (folder / "labels" / p.name).exists())
    if not stems:
        raise ValueError(f"no images/*.png with labels/*.png under {folder}: is this the fluorescence training folder?")
    return stems


def experiment_clusters(folder: Path) -> pd.DataFrame:
    """stem, size and experiment of every image: Ward clusters, per image size, of the median nucleus
    diameter and the 1st, 50th and 99.8th intensity percentiles (logs, standardised)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rows = []
    for stem in list_stems(folder):
        gray = read_gray(Path(folder) / "images" / f"{stem}.png")
        labels = read_labels(Path(folder) / "labels" / f"{stem}.png")
        p1, p50, p99 = np.percentile(gray, [1, 50, 99.8])
        rows.append(
            {
                "stem": stem,
                "size": f"{gray.shape[0]}x{gray.shape[1]}",
                "features": [np.log(median_diameter(labels)), np.log(p99 + 1), np.log1p(p50), np.log1p(p1)],
            }
        )
    table = pd.DataFrame(rows)
    table["experiment"] = ""
    for size, group in table.groupby("size"):
        features = np.array(group["features"].tolist())
        if len(group) < 3:
            clusters = np.ones(len(group), int)
        else:
            features = (features - features.mean(0)) / (features.std(0) + 1e-9)
            clusters = fcluster(linkage(features, "ward"), EXPERIMENT_CUT, "distance")
        table.loc[group.index, "experiment"] = [f"{size}-e{c}" for c in clusters]
    return table.drop(columns="features")


def write_split(folder: Path, out: Path = SPLIT_FILE) -> pd.DataFrame:
    """Cluster the images into experiments and write stem, size, experiment, held_out to `out`."""
    table = experiment_clusters(folder)
    table["held_out"] = table["experiment"].isin(HELD_OUT_EXPERIMENTS)
    table.to_csv(out, index=False)
    return table


def read_split(path: Path = SPLIT_FILE) -> pd.DataFrame:
    if not Path(path).exists():
        raise ValueError(f"fluorescence split {path} is missing: write it with python -m wsi_assets.cli.fluorescence_split")
    return pd.read_csv(path)


def split_leaks(table: pd.DataFrame) -> list[str]:
    """Experiments with images on both sides of the split (must be none)."""
    sides = table.groupby("experiment")["held_out"].nunique()
    return sorted(sides[sides > 1].index.tolist())


def describe_split(path: Path = SPLIT_FILE) -> dict:
    """The split as it goes into the model card."""
    table = read_split(path)
    held = table[table["held_out"]]
    return {
        "rule": "whole experiments held out; experiment = Ward cluster (cut "
        f"{EXPERIMENT_CUT}) per image size of log median nucleus diameter and log 1/50/99.8 intensity percentiles",
        "file": "wsi_assets/training/fluorescence_split.csv",
        "held_out_experiments": sorted(held["experiment"].unique().tolist()),
        "held_out_images": int(len(held)),
        "training_images": int(len(table) - len(held)),
        "experiments": int(table["experiment"].nunique()),
    }


def load_fluorescence_images(
    folder: Path, held_out: bool | None, limit: int = 0, split_file: Path = SPLIT_FILE
) -> list[FluoImage]:
    """Images of the split (held_out True/False; None = all), the first `limit` of them if given."""
    table = read_split(split_file)
    if held_out is not None:
        table = table[table["held_out"] == held_out]
    if limit:
        table = table.head(limit)
    out = []
    for row in table.itertuples():
        gray = read_gray(Path(folder) / "images" / f"{row.stem}.png")
        labels = read_labels(Path(folder) / "labels" / f"{row.stem}.png")
        out.append(FluoImage(row.stem, row.experiment, gray, labels, median_diameter(labels)))
    if not out:
        raise ValueError(f"no images of the fluorescence split in {folder}")
    return out


def normalised(gray: np.ndarray) -> np.ndarray:
    """float32 with the LOW_/HIGH_PERCENTILE intensities at 0 and 1, as the model does it."""
    import torch

    from wsi_assets.training.fluorescence_model import percentile_normalise

    x = torch.from_numpy(np.ascontiguousarray(gray, np.float32))[None, None]
    return percentile_normalise(x, LOW_PERCENTILE / 100, HIGH_PERCENTILE / 100)[0, 0].numpy()


class FluoCropSampler:
    """Augmented crops at the reference nucleus size: zoom, flips, 90° turns, gamma, gain, offset,
    defocus blur, noise, and sometimes a normalisation of the crop alone (as a tile of a large
    field gets). A share `centred` of the crops is centred near a random nucleus pixel. Its random
    state is `state` (for resumable training)."""

    def __init__(
        self,
        images: list[FluoImage],
        crop: int,
        seed: int,
        reference_diameter: float = REFERENCE_DIAMETER_PX,
        scale_range: tuple[float, float] = SCALE_RANGE,
        centred: float = 0.6,
    ):
        self.images = images
        self.normalised = [normalised(item.gray) for item in images]
        self.crop = crop
        self.reference = reference_diameter
        self.scale_range = scale_range
        self.rng = np.random.default_rng(seed)
        self.centred = centred
        self.foreground = [np.nonzero(item.labels) for item in images]
        # drawn by area at the reference size, so a 696x520 field of big nuclei is not over-weighted
        areas = np.array([item.gray.size * (reference_diameter / item.diameter) ** 2 for item in images])
        self.weights = areas / areas.sum()

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grays, fg, dist = sample_crops(self._crop, batch)
        return np.repeat(grays[:, None], 3, axis=1).astype(np.float32), fg, dist

    def _crop(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        index = int(rng.choice(len(self.images), p=self.weights))
        image, labels = self.normalised[index], self.images[index].labels
        low, high = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        zoom = self.reference * float(np.exp(rng.uniform(low, high))) / self.images[index].diameter
        size = max(8, int(round(self.crop / zoom)))
        h, w = labels.shape
        if h < size or w < size:
            ph, pw = max(0, size - h), max(0, size - w)
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            labels = cv2.copyMakeBorder(labels, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            h, w = labels.shape
        if rng.random() < self.centred and self.foreground[index][0].size:
            # most DSB fields are sparse: a crop around a random nucleus pixel teaches more per step
            ys, xs = self.foreground[index]
            pick = int(rng.integers(0, ys.size))
            y = int(np.clip(ys[pick] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
            x = int(np.clip(xs[pick] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
        else:
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        image, labels = image[y : y + size, x : x + size], labels[y : y + size, x : x + size]
        if size != self.crop:
            interpolation = cv2.INTER_AREA if size > self.crop else cv2.INTER_LINEAR
            image = cv2.resize(image, (self.crop, self.crop), interpolation=interpolation)
            labels = resize_labels(labels, (self.crop, self.crop))
        k = int(rng.integers(0, 4))
        image, labels = np.rot90(image, k), np.rot90(labels, k)
        if rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        return self._intensity(np.ascontiguousarray(image)), np.ascontiguousarray(labels)

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        image = np.maximum(image, 0.0) ** float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 2.0)))
        if rng.random() < 0.5:
            image = image + rng.normal(0.0, rng.uniform(0.01, 0.08), image.shape).astype(np.float32)
        image = image * float(rng.uniform(0.6, 1.4)) + float(rng.uniform(-0.1, 0.1))
        if rng.random() < 0.3:  # a tile of a large field: normalised by its own percentiles
            image = normalised(image)
        return np.clip(image, -1.0, 2.0).astype(np.float32)
