"""Smooth fields and textures: the tissue shape and eosin density, and the periodic noise textures."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .spec import _BLOCK_TILES, _LEVEL_FACTOR, TILE_SIZE, SyntheticSlideSpec

_GRID_SIDE = 1024  # most tissue field nodes along the slide's long side
_NOISE_PERIOD = 512


# --------------------------------------------------------------------------- tissue


@dataclass(frozen=True)
class _TissueGrid:
    """Smooth fields sampled at nodes (k + 0.5) * step of level 0, plus one replicated node all round.

    Stored index c holds node c - 1. `step` is a power of 4, so at every pyramid level finer
    than the grid a node falls on a whole number of pixels and cv2.resize interpolates exactly.
    """

    tissue: np.ndarray  # float32; > 0 is tissue
    density: np.ndarray  # float32 eosin density around 1
    step: int


def synthetic_tissue_mask(spec: SyntheticSlideSpec, downsample: float) -> np.ndarray:
    """True tissue at `downsample`: shape (ceil(H / ds), ceil(W / ds)), one value per pixel centre."""
    width = math.ceil(spec.width / downsample)
    height = math.ceil(spec.height / downsample)
    mask = np.empty((height, width), bool)
    rows = max(1, 2**22 // max(width, 1))  # bounded temporaries for huge masks
    for y in range(0, height, rows):
        h = min(rows, height - y)
        mask[y : y + h] = _field_region(spec, downsample, 0, y, width, h)[0] > 0
    return mask


def _field_region(spec, downsample: float, x: int, y: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue field (> 0 is tissue) and eosin density at the pixel centres of a level region."""
    grid = _tissue_grid(spec)
    ratio = grid.step / downsample
    pixels_per_node = round(ratio)
    if pixels_per_node >= 1 and ratio == pixels_per_node and x % pixels_per_node == 0 and y % pixels_per_node == 0:
        return _upsampled_fields(grid, pixels_per_node, x, y, width, height)
    return _remapped_fields(grid, downsample, x, y, width, height)


def _upsampled_fields(grid: _TissueGrid, f: int, x: int, y: int, width: int, height: int):
    """Bilinear fields by cv2.resize of the nodes around the region, which starts on a node cell."""
    col0, col1 = x // f, -(-(x + width) // f)
    row0, row1 = y // f, -(-(y + height) // f)
    # stored indices col0 .. col1 + 1 are nodes col0 - 1 .. col1: one node beyond each side
    cols = np.clip(np.arange(col0, col1 + 2), 0, grid.tissue.shape[1] - 1)
    rows = np.clip(np.arange(row0, row1 + 2), 0, grid.tissue.shape[0] - 1)
    fields = []
    for values in (grid.tissue, grid.density):
        nodes = values[np.ix_(rows, cols)]
        dense = cv2.resize(nodes, (nodes.shape[1] * f, nodes.shape[0] * f), interpolation=cv2.INTER_LINEAR)
        fields.append(dense[f : f + height, f : f + width])
    return fields


def _remapped_fields(grid: _TissueGrid, downsample: float, x: int, y: int, width: int, height: int):
    scale = downsample / grid.step
    gx = ((np.arange(x, x + width) + 0.5) * scale + 0.5).astype(np.float32)
    gy = ((np.arange(y, y + height) + 0.5) * scale + 0.5).astype(np.float32)
    map_x = np.repeat(gx[None, :], height, axis=0)
    map_y = np.repeat(gy[:, None], width, axis=1)
    return [
        cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for values in (grid.tissue, grid.density)
    ]


def _tissue_at(spec, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear tissue field at level-0 points, in float64 from the same grid nodes."""
    grid = _tissue_grid(spec)
    values = grid.tissue
    rows, cols = values.shape
    gx = np.clip(x / grid.step + 0.5, 0, cols - 1)
    gy = np.clip(y / grid.step + 0.5, 0, rows - 1)
    ix = np.minimum(gx.astype(np.int64), cols - 2)
    iy = np.minimum(gy.astype(np.int64), rows - 2)
    fx, fy = gx - ix, gy - iy
    top = values[iy, ix] * (1 - fx) + values[iy, ix + 1] * fx
    bottom = values[iy + 1, ix] * (1 - fx) + values[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


@functools.lru_cache(maxsize=8)
def _tissue_grid(spec: SyntheticSlideSpec) -> _TissueGrid:
    long_side = max(spec.width, spec.height)
    step = 1
    while long_side / step > _GRID_SIDE:
        step *= _LEVEL_FACTOR
    # node k sits at (k + 0.5) * step; stored index c = k + 1, with nodes past the far edges
    cols = math.ceil(spec.width / step) + 2
    rows = math.ceil(spec.height / step) + 2
    u = (np.arange(cols) - 0.5) * step / long_side
    v = (np.arange(rows) - 0.5) * step / long_side
    rng = np.random.default_rng([spec.seed & 0xFFFFFFFF, 0x7155])
    shape = _TissueShape.draw(rng, spec.width / long_side, spec.height / long_side)
    tissue = np.empty((rows, cols), np.float32)
    density = np.empty((rows, cols), np.float32)
    for r in range(0, rows, 64):  # bands keep the float64 temporaries small
        uu, vv = np.meshgrid(u, v[r : r + 64])
        tissue[r : r + 64] = shape.field(uu, vv)
        density[r : r + 64] = shape.density(uu, vv)

    fraction = spec.tissue_fraction if spec.tissue_fraction is not None else rng.uniform(0.40, 0.55)
    threshold = np.quantile(tissue[1:-1, 1:-1], 1.0 - fraction)
    tissue -= np.float32(threshold)
    return _TissueGrid(tissue=tissue, density=density, step=step)


@dataclass(frozen=True)
class _Wave:
    amplitude: float
    frequency: float  # radians per unit of the slide's long side
    direction: float
    phase: float

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        along = u * math.cos(self.direction) + v * math.sin(self.direction)
        return self.amplitude * np.cos(self.frequency * along + self.phase)


@dataclass(frozen=True)
class _Blob:
    centre: tuple[float, float]
    size: float
    aspect: float
    turn: float
    lumps: tuple[tuple[int, float, float], ...]  # (harmonic, amplitude, phase) of the outline

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """1 at the centre, 0 on the lumpy outline, negative outside."""
        du, dv = u - self.centre[0], v - self.centre[1]
        along = (du * math.cos(self.turn) + dv * math.sin(self.turn)) / self.size
        across = (dv * math.cos(self.turn) - du * math.sin(self.turn)) / (self.size * self.aspect)
        theta = np.arctan2(across, along)
        outline = 1.0 + sum(a * np.cos(k * theta + phase) for k, a, phase in self.lumps)
        return 1.0 - np.hypot(along, across) / outline


@dataclass(frozen=True)
class _TissueShape:
    """Analytic tissue: a union of lumpy ellipses with gentle waves, kept off the slide edges."""

    extent: tuple[float, float]  # slide width and height over its long side
    blobs: tuple[_Blob, ...]
    waves: tuple[_Wave, ...]
    stain_waves: tuple[_Wave, ...]

    @classmethod
    def draw(cls, rng: np.random.Generator, extent_u: float, extent_v: float) -> _TissueShape:
        count = int(rng.integers(2, 5))
        radius = math.sqrt(0.5 * extent_u * extent_v / (count * math.pi))
        blobs = tuple(
            _Blob(
                centre=(rng.uniform(0.25, 0.75) * extent_u, rng.uniform(0.25, 0.75) * extent_v),
                size=radius * rng.uniform(0.8, 1.25),
                aspect=rng.uniform(0.6, 1.0),
                turn=rng.uniform(0, math.pi),
                lumps=tuple((k, rng.uniform(0.04, 0.18) / k, rng.uniform(0, 2 * math.pi)) for k in range(2, 7)),
            )
            for _ in range(count)
        )
        return cls(
            extent=(extent_u, extent_v),
            blobs=blobs,
            waves=_draw_waves(rng, count=4, wavelengths=(0.08, 0.25), amplitude=0.06),
            stain_waves=_draw_waves(rng, count=5, wavelengths=(0.03, 0.15), amplitude=0.12),
        )

    def field(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        field = np.maximum.reduce([blob(u, v) for blob in self.blobs])
        field += sum(wave(u, v) for wave in self.waves)
        edge = np.minimum.reduce([u, v, self.extent[0] - u, self.extent[1] - v])
        return field - np.clip((0.04 - edge) / 0.04, 0, None)

    def density(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Eosin density around 1: darker and paler patches of stroma."""
        return 1.0 + sum(wave(u, v) for wave in self.stain_waves)


def _draw_waves(rng: np.random.Generator, count: int, wavelengths: tuple[float, float], amplitude: float):
    return tuple(
        _Wave(
            amplitude=amplitude / math.sqrt(count),
            direction=rng.uniform(0, 2 * math.pi),
            frequency=2 * math.pi / rng.uniform(*wavelengths),
            phase=rng.uniform(0, 2 * math.pi),
        )
        for _ in range(count)
    )


# --------------------------------------------------------------------------- noise


@functools.lru_cache(maxsize=8)
def _noise_texture(seed: int, kind: int) -> np.ndarray:
    """Periodic unit-variance noise, padded so any tile-row block's window is one slice."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x40153, kind])
    noise = rng.standard_normal((_NOISE_PERIOD, _NOISE_PERIOD)).astype(np.float32)
    sigma = 0.8 if kind == 0 else 1.3
    margin = 8  # cv2 blurs have no wrap-around border; blur a wrapped copy instead
    noise = np.pad(noise, margin, mode="wrap")
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)[margin:-margin, margin:-margin]
    noise /= noise.std()
    return np.pad(noise, ((0, TILE_SIZE), (0, _BLOCK_TILES * TILE_SIZE)), mode="wrap")


def _noise_window(seed: int, kind: int, x: int, y: int, width: int, height: int) -> np.ndarray:
    return _periodic_window(_noise_texture(seed, kind), x, y, width, height)


def _periodic_window(texture: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """The window at (x, y) of a texture that repeats every _NOISE_PERIOD px."""
    if height > texture.shape[0] - _NOISE_PERIOD or width > texture.shape[1] - _NOISE_PERIOD:
        rows = (np.arange(y, y + height) % _NOISE_PERIOD)[:, None]
        cols = (np.arange(x, x + width) % _NOISE_PERIOD)[None, :]
        return texture[rows, cols]
    oy, ox = y % _NOISE_PERIOD, x % _NOISE_PERIOD
    return texture[oy : oy + height, ox : ox + width]
