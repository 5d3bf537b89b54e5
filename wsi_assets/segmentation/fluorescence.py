"""Nuclei of one fluorescence plane (a 2-D nuclear channel, any size, dtype or scale) with the fluorescence model.

The plane is scaled to uint8 by its own 1st..99.8th percentiles once, so every tile of a large
plane sees the same intensities (the model renormalises each input, which is then near identity
wherever there are nuclei), zoomed so its nuclei are the model's reference size, and segmented
in overlapping tiles as slides are: working memory is a few tiles whatever the plane size.
Each nucleus is kept by the tile whose core holds its centroid; one that a neighbour already
painted (outlined a little differently there) is dropped, the raster form of `border_dedup`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from wsi_assets.core.quoting import short_repr
from wsi_assets.segmentation.classical_fluorescence import estimate_nucleus_diameter, segment_fluorescence_classical
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.segmentation.scaling import check_mpp, resample_image, resize_labels
from wsi_assets.slides.resolution import is_plausible_mpp
from wsi_assets.slides.tiling import make_tile_grid

MPP_GIVEN = "given"
MPP_ESTIMATED = "estimated from nucleus size"
MPP_MODEL_DEFAULT = "model default"

REFERENCE_NUCLEUS_UM = 8.0  # a fluorescence model card without nucleus_scale: nuclei taken as 8 µm across
SAMPLE_PX = 1 << 22  # pixels the intensity percentiles are taken from (strided), whatever the plane size
ESTIMATE_WINDOW_PX = 1024  # nucleus size measured in up to ESTIMATE_WINDOWS windows of this side
ESTIMATE_WINDOWS = 4
DUPLICATE_OVERLAP = 0.5  # a nucleus whose area is this much painted already is a neighbour tile's


@dataclass(frozen=True)
class FluorescenceResult:
    """A segmented plane: labels and how its µm/px was chosen."""

    labels: np.ndarray  # int32 (H,W), 0 background, 1..n
    mpp: float  # µm/px the plane was segmented as (given, estimated, or the model's own)
    mpp_source: str  # MPP_GIVEN | MPP_ESTIMATED | MPP_MODEL_DEFAULT
    nucleus_diameter_px: float | None  # measured median nucleus diameter (only when mpp was estimated)
    model: str  # "<name> <version>"
    tiles: int

    @property
    def count(self) -> int:
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def info(self) -> dict:
        """What was chosen, as recorded beside µm/px in metadata."""
        info = {"modality": "fluorescence", "mpp": round(self.mpp, 4), "mpp_source": self.mpp_source, "model": self.model}
        if self.nucleus_diameter_px is not None:
            info["nucleus_diameter_px"] = round(self.nucleus_diameter_px, 2)
        return info


@dataclass(frozen=True)
class FluorescenceModel:
    """A fluorescence segmenter reduced to what tiling needs: uint8 (H,W) at `mpp` -> int32 labels."""

    name: str
    version: str
    mpp: float
    reference_diameter_px: float  # nucleus diameter (px at `mpp`) the model was trained on
    device: str
    segment: Callable[[np.ndarray], np.ndarray]

    @property
    def reference_diameter_um(self) -> float:
        return self.reference_diameter_px * self.mpp


def _segmenter_model(segmenter: Segmenter, card: dict | None = None) -> FluorescenceModel:
    """Any `Segmenter` fed the plane replicated to RGB, as the fluorescence model was trained."""
    scale = (card or {}).get("nucleus_scale") or {}
    reference = float(scale.get("reference_diameter_px") or REFERENCE_NUCLEUS_UM / float(segmenter.mpp))

    def segment(gray: np.ndarray) -> np.ndarray:
        rgb = np.repeat(gray[np.newaxis, :, :, np.newaxis], 3, axis=3)
        return np.asarray(segmenter.segment_batch(rgb))[0].astype(np.int32, copy=False)

    return FluorescenceModel(segmenter.name, segmenter.version, float(segmenter.mpp), reference, segmenter.device, segment)


def classical_model() -> FluorescenceModel:
    """The weight-free floor (`classical_fluorescence`) at a nominal 0.5 µm/px, 16 px nuclei."""
    reference = REFERENCE_NUCLEUS_UM / 0.5
    return FluorescenceModel(
        "classical-fluorescence",
        "1",
        0.5,
        reference,
        "cpu",
        lambda gray: segment_fluorescence_classical(gray, nucleus_diameter_px=reference),
    )


@lru_cache(maxsize=4)
def _file_model(path: str, device: str) -> FluorescenceModel:
    from wsi_assets.segmentation.registry import get_segmenter

    segmenter = get_segmenter(path, device)
    return _segmenter_model(segmenter, getattr(segmenter, "card", None))


def fluorescence_model(
    model: FluorescenceModel | Segmenter | str | Path | None = None, device: str = "auto"
) -> FluorescenceModel:
    """The model by name: None, "default" or "fluorescence-default" (the shipped fluorescence model),
    "classical" (the weight-free floor), a TorchScript file path, or a `Segmenter` / `FluorescenceModel`."""
    from wsi_assets.segmentation.registry import CLASSICAL, fluorescence_model_path

    if isinstance(model, FluorescenceModel):
        return model
    if model is not None and not isinstance(model, (str, Path)):
        return _segmenter_model(model, getattr(model, "card", None))
    if model == CLASSICAL:
        return classical_model()
    path = fluorescence_model_path(model)
    return _file_model(str(path), device or "auto")


def check_plane(gray) -> np.ndarray:
    """`gray` as a 2-D numeric array, or a ValueError the caller can act on."""
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[2] == 1:
        gray = gray[:, :, 0]
    if gray.ndim != 2:
        raise ValueError(f"a fluorescence plane must be a 2-D (H,W) array, got shape {gray.shape}")
    if gray.shape[0] == 0 or gray.shape[1] == 0:
        raise ValueError(f"a fluorescence plane must not be empty, got shape {gray.shape}")
    if not (np.issubdtype(gray.dtype, np.integer) or np.issubdtype(gray.dtype, np.floating) or gray.dtype == bool):
        raise ValueError(f"a fluorescence plane must hold numbers (integer or float), got {gray.dtype}")
    return gray


def _sample(gray: np.ndarray) -> np.ndarray:
    """At most SAMPLE_PX pixels spread evenly over the plane (a view, no copy of the plane)."""
    step = max(1, math.ceil(math.sqrt(gray.size / SAMPLE_PX)))
    return gray[::step, ::step]


def intensity_range(gray: np.ndarray) -> tuple[float, float]:
    """The plane's 1st and 99.8th percentiles (of an even sample for large planes)."""
    sample = _sample(gray).astype(np.float64)
    if not np.isfinite(sample).all():
        raise ValueError("a fluorescence plane must not hold NaN or infinite values")
    low, high = np.percentile(sample, [1.0, 99.8])
    return float(low), float(high)


def as_uint8(window: np.ndarray, low: float, high: float) -> np.ndarray:
    """A window of the plane scaled so `low`..`high` map to 0..255 (clipped)."""
    if not high > low:
        return np.zeros(window.shape, np.uint8)
    scaled = (window.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _windows(height: int, width: int, side: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to `count` (y0, x0, h, w) windows of `side` spread over the plane (the whole plane when small)."""
    if height <= side and width <= side:
        return [(0, 0, height, width)]
    rows = min(math.ceil(height / side), max(1, round(math.sqrt(count))))
    cols = min(math.ceil(width / side), max(1, count // rows))
    ys = np.linspace(0, max(0, height - side), rows + 2)[1:-1] if rows > 1 else [max(0, (height - side) // 2)]
    xs = np.linspace(0, max(0, width - side), cols + 2)[1:-1] if cols > 1 else [max(0, (width - side) // 2)]
    return [(int(y), int(x), min(side, height), min(side, width)) for y in ys for x in xs]


def measure_nucleus_diameter(gray: np.ndarray, low: float | None = None, high: float | None = None) -> float | None:
    """Median nucleus diameter (px) of a plane of any size, from a few windows; None when no nuclei show."""
    gray = check_plane(gray)
    if low is None or high is None:
        low, high = intensity_range(gray)
    found = []
    for y0, x0, h, w in _windows(*gray.shape, ESTIMATE_WINDOW_PX, ESTIMATE_WINDOWS):
        diameter = estimate_nucleus_diameter(as_uint8(gray[y0 : y0 + h, x0 : x0 + w], low, high))
        if diameter:
            found.append(diameter)
    return float(np.median(found)) if found else None


def estimate_fluorescence_mpp(gray: np.ndarray, reference_diameter_um: float = REFERENCE_NUCLEUS_UM) -> float | None:
    """µm/px of a fluorescence plane from its median nucleus diameter (taken as `reference_diameter_um`,
    the shipped model's 8 µm), or None when no nuclei show or the value is implausible."""
    gray = check_plane(gray)
    low, high = intensity_range(gray)
    if not high > low:
        return None
    diameter = measure_nucleus_diameter(gray, low, high)
    estimate = reference_diameter_um / diameter if diameter else None
    return float(estimate) if estimate is not None and is_plausible_mpp(estimate) else None


def choose_mpp(
    gray: np.ndarray, mpp: float | None, model: FluorescenceModel, low: float, high: float
) -> tuple[float, str, float | None]:
    """(µm/px, source, measured diameter) for the plane: as given, else from its nucleus size, else the model's."""
    if mpp is not None:
        return check_mpp(mpp), MPP_GIVEN, None
    diameter = measure_nucleus_diameter(gray, low, high)
    if diameter:
        estimate = model.reference_diameter_um / diameter
        if is_plausible_mpp(estimate):
            return estimate, MPP_ESTIMATED, diameter
    return model.mpp, MPP_MODEL_DEFAULT, diameter


def _paint_owned(
    out: np.ndarray, labels: np.ndarray, box: tuple[int, int, int, int], core: tuple[float, float, float, float], next_id: int
) -> tuple[int, int]:
    """Paint the nuclei of one tile's labels (already at plane resolution, covering `box`) that the
    tile owns into `out`; returns (next free id, duplicates dropped)."""
    y0, x0, h, w = box
    core_x0, core_y0, core_x1, core_y1 = core
    top = int(labels.max()) if labels.size else 0
    if top == 0:
        return next_id, 0
    plane_h, plane_w = out.shape
    # A nucleus cut by an inner edge of the read box belongs to the neighbour that sees it whole.
    edges = []
    if y0 > 0:
        edges.append(labels[0])
    if y0 + h < plane_h:
        edges.append(labels[-1])
    if x0 > 0:
        edges.append(labels[:, 0])
    if x0 + w < plane_w:
        edges.append(labels[:, -1])
    cut = np.zeros(top + 1, bool)
    if edges:
        cut[np.concatenate(edges)] = True
    dropped = 0
    target = out[y0 : y0 + h, x0 : x0 + w]
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None or cut[index]:
            continue
        mask = labels[region] == index
        ys, xs = np.nonzero(mask)
        cy = ys.mean() + region[0].start + y0 + 0.5
        cx = xs.mean() + region[1].start + x0 + 0.5
        if not (core_x0 <= cx < core_x1 and core_y0 <= cy < core_y1):
            continue
        painted = target[region]
        if np.count_nonzero(painted[mask]) > DUPLICATE_OVERLAP * len(ys):
            dropped += 1
            continue
        painted[mask & (painted == 0)] = next_id
        next_id += 1
    return next_id, dropped


def segment_fluorescence(
    gray: np.ndarray,
    mpp: float | None = None,
    model: FluorescenceModel | Segmenter | str | Path | None = None,
    *,
    device: str = "auto",
    tile_core_px: int = 1024,
    tile_margin_px: int = 64,
) -> FluorescenceResult:
    """Nucleus instance labels of one fluorescence plane (bright nuclei on a dark background).

    `gray`: 2-D (H,W) array of any integer or float dtype and scale (a (H,W,1) array is taken too).
    `mpp`: its µm per pixel, or None when unknown: it is then estimated from the median nucleus
    diameter (the model's reference nucleus, 8 µm for the shipped one, over the measured px),
    or, where no nuclei can be measured, taken as the model's own µm/px (no zoom).
    `model`: None / "default" / "fluorescence-default" (shipped fluorescence model), "classical",
    a TorchScript file (fed the plane replicated to 3 channels), or a `Segmenter`.
    Tiles of `tile_core_px` model px with `tile_margin_px` overlap bound the memory for any plane;
    a plane that fits one tile is segmented whole.

    Returns a `FluorescenceResult`: `labels` int32 (H,W) 0..n, `mpp`, `mpp_source` ("given",
    "estimated from nucleus size" or "model default"), `nucleus_diameter_px`, `model`, `tiles`.
    """
    gray = check_plane(gray)
    fluo = fluorescence_model(model, device)
    low, high = intensity_range(gray)
    plane_mpp, source, diameter = choose_mpp(gray, mpp, fluo, low, high)
    height, width = gray.shape
    out = np.zeros((height, width), np.int32)
    name = f"{fluo.name} {fluo.version}"
    if not high > low:  # a flat plane holds no nuclei
        return FluorescenceResult(out, plane_mpp, source, diameter, name, 0)
    grid = make_tile_grid(width, height, plane_mpp, fluo.mpp, tile_core_px, tile_margin_px)
    zoom = plane_mpp / fluo.mpp
    next_id, tiles = 1, 0
    for tile in grid.tissue_tiles(None):
        x0, y0 = max(0, tile.read_x), max(0, tile.read_y)
        x1, y1 = min(width, tile.read_x + tile.read_w), min(height, tile.read_y + tile.read_h)
        if x1 <= x0 or y1 <= y0:
            continue
        window = as_uint8(gray[y0:y1, x0:x1], low, high)
        labels = _segment_window(fluo, window, zoom)
        next_id, _ = _paint_owned(
            out, labels, (y0, x0, y1 - y0, x1 - x0), (tile.core_x0, tile.core_y0, tile.core_x1, tile.core_y1), next_id
        )
        tiles += 1
    return FluorescenceResult(out, plane_mpp, source, diameter, name, tiles)


def _segment_window(fluo: FluorescenceModel, window: np.ndarray, zoom: float) -> np.ndarray:
    """Labels of a uint8 window at its own size, segmented at the model's scale."""
    model_input = resample_image(window, zoom)
    labels = fluo.segment(np.ascontiguousarray(model_input))
    if labels.shape != window.shape:
        labels = resize_labels(labels, window.shape)
    return labels


def describe_mpp(result: FluorescenceResult) -> str:
    """One line for logs: what µm/px the plane was segmented as and why."""
    detail = f" (median nucleus {result.nucleus_diameter_px:.1f} px)" if result.nucleus_diameter_px else ""
    return f"{result.mpp:.3g} µm/px, {result.mpp_source}{detail}; {result.count} nuclei by {short_repr(result.model)}"
