"""Region rendering: stroma, glass and nuclei drawn into RGB pixels for any level window."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import cv2
import numpy as np

from .fields import _field_region, _noise_texture, _noise_window, _periodic_window
from .nuclei import _nuclei_in_box, _outline_vertices
from .spec import SyntheticSlideSpec

_DRAW_SHIFT = 4  # cv2 fixed-point bits: vertices land on a 1/16 px grid
_CANVAS_PAD = 4  # cv2 fills differ within ~2 px of a canvas edge, so regions are drawn wider
_SUPERSAMPLE = 4  # nuclei are filled at 4x and area-averaged: cv2's LINE_AA overstates area
_MIN_FILLED_RADIUS = 3.0  # supersampled px; smaller nuclei are splatted by area instead
_OUTLINE_BATCH = 1024

_GLASS_RGB = np.array([242.0, 242.0, 242.0], np.float32)
_EOSIN_RGB = np.array([235.0, 170.0, 200.0], np.float32)
_HEMATOXYLIN_RGB = np.array([90.0, 60.0, 150.0], np.float32)
_GLASS_NOISE = 1.5
_EOSIN_NOISE = 7.0
_CHROMATIN_NOISE = 14.0
_RIM_UM = 0.6  # width of the darker nuclear rim
_RIM_DARKENING = 0.25


def render_region(spec: SyntheticSlideSpec, downsample: float, x: int, y: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) of the slide at `downsample`, from level pixel (x, y).

    Level pixel (i, j) shows the slide at level-0 point ((i + 0.5) * downsample, (j + 0.5) *
    downsample), so a region rendered in pieces equals the region rendered at once.
    """
    tissue_field, density = _field_region(spec, downsample, x, y, width, height)
    tissue = tissue_field > 0
    bands = _nuclei_touching(spec, downsample, x, y, width, height)
    first_band = next(bands, None)
    if first_band is None and not tissue.any():
        return _glass_window(spec.seed, x, y, width, height).copy()

    # planar float32 channels: numpy is slow on a trailing axis of length 3
    fine = _noise_window(spec.seed, 0, x, y, width, height)
    stroma = fine * np.float32(_EOSIN_NOISE) + np.float32(255.0)
    glass = fine * np.float32(_GLASS_NOISE)
    planes = []
    for c in range(3):
        glass_c = glass + _GLASS_RGB[c]
        planes.append(np.where(tissue, stroma - (255.0 - _EOSIN_RGB[c]) * density, glass_c))
    if first_band is not None:
        _draw_nuclei(planes, spec, itertools.chain([first_band], bands), downsample, x, y)
    rgb = cv2.merge(planes)
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


def _draw_nuclei(planes: list[np.ndarray], spec, bands: Iterator[dict], downsample: float, x: int, y: int) -> None:
    """Blend nuclei into the channel planes, each with its stain, a darker rim and chromatin."""
    height, width = planes[0].shape
    smallest = spec.nucleus_min_radius_um / spec.mpp / downsample
    if smallest * _SUPERSAMPLE >= _MIN_FILLED_RADIUS:
        alpha, stain = _filled_nuclei(spec, bands, downsample, x, y, width, height)
    else:
        alpha, stain = _splatted_nuclei(spec, bands, downsample, x, y, width, height)
    chromatin = _noise_window(spec.seed, 1, x, y, width, height) * np.float32(_CHROMATIN_NOISE) + np.float32(255)
    for c, plane in enumerate(planes):
        nucleus = chromatin - stain * (255.0 - _HEMATOXYLIN_RGB[c])
        nucleus -= plane
        nucleus *= alpha
        plane += nucleus


def _filled_nuclei(spec, bands: Iterator[dict], downsample: float, x: int, y: int, width: int, height: int):
    """Coverage in [0, 1] and stain per pixel from the outlines, area-exact to 1/_SUPERSAMPLE px."""
    k = _SUPERSAMPLE
    pad = _CANVAS_PAD  # cv2 clips polygons at the canvas edge: keep that edge off the region
    canvas = ((height + 2 * pad) * k, (width + 2 * pad) * k)
    outer = np.zeros(canvas, np.uint8)
    inner = np.zeros(canvas, np.uint8)
    stain = np.ones((height + 2 * pad, width + 2 * pad), np.float32)
    for batch in _batches(bands, _OUTLINE_BATCH):
        vertices = _outline_vertices(batch)
        outlines = _fixed_point_outlines(vertices * k, downsample, (x - pad) * k, (y - pad) * k)
        coarse = _fixed_point_outlines(vertices, downsample, x - pad, y - pad)
        inset = _outline_vertices(batch, inset=_RIM_UM / spec.mpp) * k
        inner_outlines = _fixed_point_outlines(inset, downsample, (x - pad) * k, (y - pad) * k)
        for outline, inner_outline, coarse_outline, strength in zip(outlines, inner_outlines, coarse, batch["stain"].tolist()):
            # one polygon per call: cv2 fills the polygons of one call with the even-odd rule
            cv2.fillPoly(outer, [outline], 255, cv2.LINE_8, _DRAW_SHIFT)
            cv2.fillPoly(inner, [inner_outline], 255, cv2.LINE_8, _DRAW_SHIFT)
            cv2.fillPoly(stain, [coarse_outline], strength, cv2.LINE_8, _DRAW_SHIFT)
    crop = np.s_[pad : pad + height, pad : pad + width]
    size = (width + 2 * pad, height + 2 * pad)
    outer_cover = cv2.resize(outer, size, interpolation=cv2.INTER_AREA)[crop]
    inner_cover = cv2.resize(inner, size, interpolation=cv2.INTER_AREA)[crop]
    alpha = outer_cover.astype(np.float32)
    alpha *= np.float32(1 / 255)
    rim = np.subtract(outer_cover, inner_cover, dtype=np.float32)
    return alpha, stain[crop] * (rim * np.float32(_RIM_DARKENING / 255) + np.float32(1))


def _splatted_nuclei(spec, bands: Iterator[dict], downsample: float, x: int, y: int, width: int, height: int):
    """Coverage and stain for nuclei far smaller than a pixel: each adds its area, bilinearly spread."""
    cover = np.zeros(height * width)
    stained = np.zeros(height * width)
    inset = _RIM_UM / spec.mpp
    for nuclei in bands:
        px = nuclei["centroid_x"] / downsample - 0.5 - x
        py = nuclei["centroid_y"] / downsample - 0.5 - y
        ix, iy = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        fx, fy = px - ix, py - iy
        area = nuclei["area_pixels"] / downsample**2
        major, minor = nuclei["semi_major"], nuclei["semi_minor"]
        rim_fraction = 1 - np.maximum(major - inset, 0) * np.maximum(minor - inset, 0) / (major * minor)
        strength = nuclei["stain"] * (1 + _RIM_DARKENING * rim_fraction)
        corners = ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy))
        for dx, dy, weight in corners:
            cols, rows = ix + dx, iy + dy
            ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
            index = rows[ok] * width + cols[ok]
            share = (area * weight)[ok]
            cover += np.bincount(index, weights=share, minlength=height * width)
            stained += np.bincount(index, weights=share * strength[ok], minlength=height * width)
    stain = np.divide(stained, cover, out=np.ones_like(cover), where=cover > 0)
    alpha = np.minimum(cover, 1.0)
    return alpha.reshape(height, width).astype(np.float32), stain.reshape(height, width).astype(np.float32)


def _batches(bands: Iterator[dict], size: int) -> Iterator[dict]:
    for band in bands:
        for start in range(0, len(band["nucleus_id"]), size):
            yield {name: values[start : start + size] for name, values in band.items()}


def _fixed_point_outlines(vertices: np.ndarray, downsample: float, x: int, y: int) -> np.ndarray:
    """(N, K, 2) int32 outlines in the region's cv2 pixel-centre frame, scaled by 2**shift."""
    origin = np.array([x, y], np.float64) + 0.5
    scaled = (vertices / downsample - origin) * (1 << _DRAW_SHIFT)
    return np.rint(scaled).astype(np.int32)


@functools.lru_cache(maxsize=8)
def _glass_texture(seed: int) -> np.ndarray:
    grey = np.clip(_noise_texture(seed, 0) * np.float32(_GLASS_NOISE) + _GLASS_RGB[0], 0, 255)
    return cv2.merge([grey.astype(np.uint8)] * 3)


def _glass_window(seed: int, x: int, y: int, width: int, height: int) -> np.ndarray:
    return _periodic_window(_glass_texture(seed), x, y, width, height)


def _nuclei_touching(spec, downsample: float, x: int, y: int, width: int, height: int) -> Iterator[dict]:
    """Bands of the nuclei whose outline may reach the level region (x, y, width, height)."""
    margin = spec.max_radius_px + (_CANVAS_PAD + 1) * downsample
    x0, x1 = x * downsample - margin, (x + width) * downsample + margin
    y0, y1 = y * downsample - margin, (y + height) * downsample + margin
    return _nuclei_in_box(spec, x0, y0, x1, y1)
