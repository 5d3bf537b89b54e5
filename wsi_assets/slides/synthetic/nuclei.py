"""Nuclei: the jittered lattice, its counter-based hash, their outlines and the ground-truth tables."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .fields import _tissue_at
from .spec import SyntheticSlideSpec

NUCLEUS_COLUMNS = (
    "nucleus_id",
    "centroid_x",
    "centroid_y",
    "semi_major",
    "semi_minor",
    "angle",
    "stain",
    "area_pixels",
)
_POLYGON_VERTICES = 32
_CELL_BAND = 2**18  # lattice cells evaluated at once

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1
_STREAMS = ("fill", "jitter_x", "jitter_y", "radius", "aspect", "angle", "stain")


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _seed_key(seed: int) -> np.uint64:
    z = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return np.uint64(z ^ (z >> 31))


def _cell_uniforms(seed: int, cell_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Independent uniforms in [0, 1) per cell and stream, from the cell id alone."""
    key = _splitmix64(cell_ids.astype(np.uint64) ^ _seed_key(seed))
    out = {}
    for stream, name in enumerate(_STREAMS):
        bits = _splitmix64(key + np.uint64(((stream + 1) * int(_GOLDEN)) & _MASK64))
        out[name] = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return out


def _cell_nuclei(spec: SyntheticSlideSpec, col0: int, col1: int, row0: int, row1: int) -> dict[str, np.ndarray]:
    """Nuclei of lattice cells [col0, col1) x [row0, row1) that exist, ordered by id."""
    rows, cols = spec.lattice_shape
    col0, col1 = max(col0, 0), min(col1, cols)
    row0, row1 = max(row0, 0), min(row1, rows)
    if col0 >= col1 or row0 >= row1:
        return _empty_nuclei()
    jj, ii = np.meshgrid(np.arange(row0, row1), np.arange(col0, col1), indexing="ij")
    ids = (jj * cols + ii).ravel().astype(np.int64)
    u = _cell_uniforms(spec.seed, ids)
    s = spec.spacing_px
    jitter = spec.nucleus_jitter
    cx = (ii.ravel() + 0.5 + (2 * u["jitter_x"] - 1) * jitter) * s
    cy = (jj.ravel() + 0.5 + (2 * u["jitter_y"] - 1) * jitter) * s
    keep = (u["fill"] < spec.nucleus_fill) & (cx < spec.width) & (cy < spec.height)
    keep[keep] = _tissue_at(spec, cx[keep], cy[keep]) > 0

    r_min, r_max = spec.nucleus_min_radius_um / spec.mpp, spec.nucleus_max_radius_um / spec.mpp
    major = r_min + (r_max - r_min) * u["radius"][keep]
    minor = np.maximum(major * (0.6 + 0.35 * u["aspect"][keep]), r_min)
    return {
        "nucleus_id": ids[keep],
        "centroid_x": cx[keep],
        "centroid_y": cy[keep],
        "semi_major": major,
        "semi_minor": minor,
        "angle": np.pi * u["angle"][keep],
        "stain": 0.8 + 0.35 * u["stain"][keep],
        "area_pixels": _polygon_area_factor() * major * minor,
    }


def _empty_nuclei() -> dict[str, np.ndarray]:
    return {name: np.empty(0, np.int64 if name == "nucleus_id" else np.float64) for name in NUCLEUS_COLUMNS}


def _polygon_area_factor() -> float:
    """Area of the K-gon inscribed in an ellipse, per unit semi_major * semi_minor."""
    k = _POLYGON_VERTICES
    return 0.5 * k * math.sin(2 * math.pi / k)


def _outline_vertices(nuclei, inset: float = 0.0) -> np.ndarray:
    """(N, K, 2) float64 level-0 outlines: K-gons inscribed in each ellipse shrunk by `inset` px."""
    t = np.linspace(0, 2 * np.pi, _POLYGON_VERTICES, endpoint=False)
    cos_t, sin_t = np.cos(t)[None, :], np.sin(t)[None, :]
    major = np.maximum(np.asarray(nuclei["semi_major"], np.float64)[:, None] - inset, 0)
    minor = np.maximum(np.asarray(nuclei["semi_minor"], np.float64)[:, None] - inset, 0)
    angle = np.asarray(nuclei["angle"], np.float64)[:, None]
    ex, ey = major * cos_t, minor * sin_t
    x = np.asarray(nuclei["centroid_x"], np.float64)[:, None] + ex * np.cos(angle) - ey * np.sin(angle)
    y = np.asarray(nuclei["centroid_y"], np.float64)[:, None] + ex * np.sin(angle) + ey * np.cos(angle)
    return np.stack([x, y], axis=-1)


def _nuclei_in_box(spec, x0: float, y0: float, x1: float, y1: float) -> Iterator[dict[str, np.ndarray]]:
    """Non-empty bands of the nuclei centred in [x0, x1) x [y0, y1), ordered by nucleus_id."""
    s = spec.spacing_px
    rows, cols = spec.lattice_shape
    # a centre may be jittered into the neighbouring cell: one extra cell all round
    col0, col1 = max(math.floor(x0 / s) - 1, 0), min(math.ceil(x1 / s) + 1, cols)
    row0, row1 = max(math.floor(y0 / s) - 1, 0), min(math.ceil(y1 / s) + 1, rows)
    band = max(1, _CELL_BAND // max(col1 - col0, 1))
    for row in range(row0, row1, band):
        nuclei = _cell_nuclei(spec, col0, col1, row, min(row + band, row1))
        inside = (
            (nuclei["centroid_x"] >= x0)
            & (nuclei["centroid_x"] < x1)
            & (nuclei["centroid_y"] >= y0)
            & (nuclei["centroid_y"] < y1)
        )
        if inside.any():
            yield {name: values[inside] for name, values in nuclei.items()}


def synthetic_nuclei(spec: SyntheticSlideSpec, x0: float, y0: float, x1: float, y1: float) -> pd.DataFrame:
    """True nuclei centred in [x0, x1) x [y0, y1) (level-0 px), ordered by nucleus_id.

    Columns: nucleus_id (int64, unique over the slide), centroid_x/centroid_y (centre of the
    rendered polygon), semi_major/semi_minor (level-0 px), angle (radians, from +x towards
    +y), stain (hematoxylin strength, 1 = mean) and area_pixels (area of the polygon).
    """
    bands = list(_nuclei_in_box(spec, x0, y0, x1, y1)) or [_empty_nuclei()]
    return pd.DataFrame({name: np.concatenate([b[name] for b in bands]) for name in NUCLEUS_COLUMNS})


def synthetic_nucleus_polygons(spec: SyntheticSlideSpec, nuclei_df: pd.DataFrame) -> list[np.ndarray]:
    """(K, 2) float64 x, y level-0 outline of each nucleus, the polygon that is filled."""
    return list(_outline_vertices(nuclei_df))


def iter_synthetic_nuclei(spec: SyntheticSlideSpec, chunk_px: int = 8192) -> Iterator[pd.DataFrame]:
    """The slide's true nuclei in row-major chunks of chunk_px x chunk_px (empty chunks included)."""
    for y in range(0, spec.height, chunk_px):
        for x in range(0, spec.width, chunk_px):
            yield synthetic_nuclei(spec, x, y, min(x + chunk_px, spec.width), min(y + chunk_px, spec.height))


def count_synthetic_nuclei(spec: SyntheticSlideSpec) -> int:
    """Number of true nuclei on the whole slide."""
    return sum(len(b["nucleus_id"]) for b in _nuclei_in_box(spec, 0, 0, spec.width, spec.height))
