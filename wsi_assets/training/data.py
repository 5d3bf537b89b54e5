"""Labelled nucleus images: loading, resampling to the training µm/px, targets, augmented crops.

A labelled folder is either the `nuclei_train` layout (`manifest.csv` with columns `dataset`,
`image`, `label`, `licence`, `commercial_use_ok`, `microns_per_pixel`) or any folder holding
`images/<stem>.png` with `labels/<stem>.png` (uint16 instance maps) beside it, at one given
µm/px. Pixel sizes written "unknown" are estimated from the labelled nuclei's median diameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from wsi_assets.core.images import read_image_file_rgb
from wsi_assets.core.optical_density import optical_density
from wsi_assets.segmentation.image import resample_image, resize_labels
from wsi_assets.training.defaults import BASE_STAIN_JITTER, SCALE_JITTER, STAIN_JITTER

# Median equivalent nucleus diameter in MoNuSeg (20.3 px at 0.25 µm/px): the one set with a
# measured pixel size, used to put tiles of unknown magnification at scale.
REFERENCE_NUCLEUS_DIAMETER_UM = 5.1


@dataclass
class LabelledImage:
    dataset: str
    stem: str
    rgb: np.ndarray  # uint8 (H,W,3)
    labels: np.ndarray  # int32 (H,W)
    mpp: float
    mpp_estimated: bool
    licence: str
    commercial_use_ok: bool


def parse_mpp(text) -> float | None:
    """First number in a manifest pixel-size cell ("0.25 (40x; ...)", "~0.2 ..."), None if unknown."""
    if text is None or "unknown" in str(text).lower():
        return None
    match = re.search(r"\d+(?:\.\d+)?", str(text))
    return float(match.group()) if match else None


def estimate_mpp(labels: np.ndarray) -> float:
    """µm/px that makes the median labelled nucleus as wide as the reference diameter."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    median_diameter_px = float(np.median(2 * np.sqrt(areas / np.pi)))
    return REFERENCE_NUCLEUS_DIAMETER_UM / median_diameter_px


def allows_commercial_use(value) -> bool:
    """Whether a manifest's `commercial_use_ok` cell says yes ("yes", "true" or "1")."""
    return str(value).strip().lower() in ("yes", "true", "1")


def read_labels(path: Path) -> np.ndarray:
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ValueError(f"cannot read label image {path}")
    if labels.ndim == 3:
        labels = labels[..., 0]
    return labels.astype(np.int32)


def list_labelled_folder(folder: Path, mpp: float | None = None) -> pd.DataFrame:
    """One row per image/label pair of `folder` (manifest or images/+labels/ layout)."""
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if manifest.exists():
        table = pd.read_csv(manifest)
        table["stem"] = [Path(p).stem for p in table["image"]]
        if mpp:
            table["microns_per_pixel"] = str(mpp)
        return table
    rows = []
    for image in sorted(folder.rglob("images/*.png")):
        label = image.parent.parent / "labels" / image.name
        if label.exists():
            rows.append(
                {
                    "dataset": image.parent.parent.name if image.parent.parent != folder else folder.name,
                    "image": str(image.relative_to(folder)),
                    "label": str(label.relative_to(folder)),
                    "licence": "unknown",
                    "commercial_use_ok": "unknown",
                    "microns_per_pixel": str(mpp) if mpp else "unknown",
                    "stem": image.stem,
                }
            )
    if not rows:
        raise ValueError(f"no labelled images under {folder}: expected manifest.csv or images/*.png with labels/*.png")
    return pd.DataFrame(rows)


def load_images(folder: Path, table: pd.DataFrame) -> list[LabelledImage]:
    out = []
    for _, row in table.iterrows():
        rgb = read_image_file_rgb(Path(folder) / row["image"])
        labels = read_labels(Path(folder) / row["label"])
        mpp = parse_mpp(row.get("microns_per_pixel"))
        estimated = mpp is None
        if estimated:
            mpp = estimate_mpp(labels)
        out.append(
            LabelledImage(
                dataset=row["dataset"],
                stem=row["stem"],
                rgb=rgb,
                labels=labels,
                mpp=float(mpp),
                mpp_estimated=estimated,
                licence=str(row.get("licence", "unknown")),
                commercial_use_ok=allows_commercial_use(row.get("commercial_use_ok", "")),
            )
        )
    return out


def at_mpp(item: LabelledImage, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels resampled to `mpp` (labels by nearest neighbour)."""
    scale = item.mpp / mpp
    rgb = resample_image(item.rgb, scale)
    labels = item.labels if rgb.shape[:2] == item.labels.shape else resize_labels(item.labels, rgb.shape[:2])
    return rgb, labels


def targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (float32 0/1) and distance to the nucleus edge normalised to 1 at each centre."""
    fg = labels > 0
    # a pixel next to another nucleus is boundary, so touching nuclei get separate distance peaks
    padded = np.pad(labels, 1, mode="edge")
    inner = fg.copy()
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        inner &= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] == labels
    dist = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, 3) + fg.astype(np.float32)
    n = int(labels.max())
    if n == 0:
        return fg.astype(np.float32), np.zeros(labels.shape, np.float32)
    peak = np.asarray(ndimage.maximum(dist, labels, np.arange(1, n + 1)), np.float32)
    peak = np.concatenate([[1.0], np.maximum(peak, 1.0)]).astype(np.float32)
    return fg.astype(np.float32), (dist / peak[labels]).astype(np.float32) * fg


def parse_dataset_shares(texts: list[str]) -> dict[str, float]:
    """`["consep_train=0.25", ...]` -> {"consep_train": 0.25}; shares must lie in (0, 1) and sum below 1."""
    shares = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not name or not 0 < share < 1:
            raise ValueError(
                f"--dataset-share {text!r}: write DATASET=FRACTION with a fraction between 0 and 1, e.g. consep_train=0.25"
            )
        shares[name] = share
    if sum(shares.values()) >= 1:
        raise ValueError(
            f"--dataset-share fractions add up to {sum(shares.values()):.2f}: they must leave a share for the other datasets"
        )
    return shares


def sampling_weights(datasets: list[str], areas: list[float], shares: dict[str, float]) -> np.ndarray:
    """Probability of drawing each image: a dataset named in `shares` gets that fraction of the
    crops, spread over its images by area; the other datasets split the rest by area.

    By area alone, a set of many overlapping crops (CoNSeP) outweighs the sets the model already
    does well on; a fixed share keeps their mix as it was.
    """
    datasets = list(datasets)
    areas = np.asarray(areas, np.float64)
    unknown = sorted(set(shares) - set(datasets))
    if unknown:
        raise ValueError(
            f"--dataset-share: {', '.join(unknown)} is not among the training datasets ({', '.join(sorted(set(datasets)))})"
        )
    named = np.array([d in shares for d in datasets])
    weights = np.zeros(len(datasets))
    for name, share in shares.items():
        mine = np.array([d == name for d in datasets])
        weights[mine] = share * areas[mine] / areas[mine].sum()
    if (~named).any():
        weights[~named] = (1 - sum(shares.values())) * areas[~named] / areas[~named].sum()
    return weights / weights.sum()


def image_weights(
    items: list[LabelledImage], images: list[tuple[np.ndarray, np.ndarray]], shares: dict[str, float]
) -> np.ndarray:
    """`sampling_weights` for labelled images and their resampled (rgb, labels) pairs, area at the training µm/px."""
    return sampling_weights([item.dataset for item in items], [rgb.shape[0] * rgb.shape[1] for rgb, _ in images], shares)


def sample_crops(crop, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batch` (image, labels) crops from `crop()`, the images stacked and their foreground and distance targets as (B,1,H,W)."""
    images, fgs, dists = [], [], []
    for _ in range(batch):
        image, labels = crop()
        fg, dist = targets(labels)
        images.append(image)
        fgs.append(fg)
        dists.append(dist)
    return np.stack(images), np.stack(fgs)[:, None], np.stack(dists)[:, None]


class CropSampler:
    """Random augmented crops of images at one µm/px: flips, 90° turns, scale, H&E jitter, blur."""

    def __init__(
        self,
        images: list[tuple[np.ndarray, np.ndarray]],
        crop: int,
        seed: int,
        stain_jitter: float = STAIN_JITTER,
        scale_jitter: float = SCALE_JITTER,
        weights: np.ndarray | None = None,
    ):
        self.images = images
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        # stain_jitter: relative change of each optical-density channel (and, above
        # BASE_STAIN_JITTER, a mixing of the stain vectors, i.e. a hue shift between scanners);
        # scale_jitter: crops are zoomed by a factor in [1/scale_jitter, scale_jitter].
        self.stain_jitter = stain_jitter
        self.scale_jitter = scale_jitter
        if weights is None:
            weights = np.array([rgb.shape[0] * rgb.shape[1] for rgb, _ in images], np.float64)
        self.weights = np.asarray(weights, np.float64) / float(np.sum(weights))

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgbs, fg, dist = sample_crops(self._crop, batch)
        return rgbs.astype(np.float32).transpose(0, 3, 1, 2), fg, dist

    def _crop(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        rgb, labels = self.images[rng.choice(len(self.images), p=self.weights)]
        scale = float(np.exp(rng.uniform(-np.log(self.scale_jitter), np.log(self.scale_jitter))))
        size = int(round(self.crop / scale))
        h, w = labels.shape
        if h < size or w < size:
            ph, pw = max(0, size - h), max(0, size - w)
            rgb = cv2.copyMakeBorder(rgb, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            labels = cv2.copyMakeBorder(labels, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            h, w = labels.shape
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        rgb = rgb[y : y + size, x : x + size]
        labels = labels[y : y + size, x : x + size]
        if size != self.crop:
            rgb = cv2.resize(rgb, (self.crop, self.crop), interpolation=cv2.INTER_LINEAR)
            labels = resize_labels(labels, (self.crop, self.crop))
        k = int(rng.integers(0, 4))
        rgb, labels = np.rot90(rgb, k), np.rot90(labels, k)
        if rng.random() < 0.5:
            rgb, labels = rgb[:, ::-1], labels[:, ::-1]
        rgb = self._colour(np.ascontiguousarray(rgb))
        return rgb, np.ascontiguousarray(labels)

    def _colour(self, rgb: np.ndarray) -> np.ndarray:
        rng = self.rng
        jitter = self.stain_jitter
        od = optical_density(rgb, offset=1.0, log=np.log)  # ln(256 / (I + 1)), float32
        if jitter > BASE_STAIN_JITTER:
            spread = (jitter - BASE_STAIN_JITTER) / 2
            mixing = np.eye(3, dtype=np.float32) + rng.normal(0.0, spread, (3, 3)).astype(np.float32)
            od = od @ mixing
        od = od * rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32) + rng.uniform(-jitter / 3, jitter / 3, 3).astype(
            np.float32
        )
        out = 256.0 * np.exp(-np.maximum(od, 0.0)) - 1.0
        out = (out - 128.0) * rng.uniform(0.85, 1.15) + 128.0 + rng.uniform(-15, 15)
        if rng.random() < 0.2:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
        return np.clip(out, 0, 255).astype(np.uint8)
