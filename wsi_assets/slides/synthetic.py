"""Synthetic H&E-like whole-slide images whose nuclei are known exactly.

A slide is a pure function of a :class:`SyntheticSlideSpec`: tissue is a smooth field
sampled on a small global grid, nuclei sit one per cell of a jittered lattice and draw
their parameters from a counter-based hash of ``(seed, cell)``. Any region can therefore be
rendered, or its truth listed, without looking at the rest of the slide, which is what lets
:func:`write_synthetic_slide` stream slides of any size tile by tile in flat memory.

The file is a pyramidal tiled JPEG TIFF whose first description starts with "Aperio", so
OpenSlide opens it with vendor "aperio"; the spec itself rides along in that description.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

TILE_SIZE = 256
SPEC_FIELD = "wsi-assets-synthetic"
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

_FORMAT_VERSION = 1
_LEVEL_FACTOR = 4
_SMALLEST_LEVEL_SIDE = 1024
_BLOCK_TILES = 8  # tiles of one tile row rendered together: numpy work per call stays large
_POLYGON_VERTICES = 32
_GRID_SIDE = 1024  # most tissue field nodes along the slide's long side
_NOISE_PERIOD = 512
_DRAW_SHIFT = 4  # cv2 fixed-point bits: vertices land on a 1/16 px grid
_CANVAS_PAD = 4  # cv2 fills differ within ~2 px of a canvas edge, so regions are drawn wider
_SUPERSAMPLE = 4  # nuclei are filled at 4x and area-averaged: cv2's LINE_AA overstates area
_MIN_FILLED_RADIUS = 3.0  # supersampled px; smaller nuclei are splatted by area instead
_OUTLINE_BATCH = 1024
_CELL_BAND = 2**18  # lattice cells evaluated at once
_RENDER_WORKERS = max(1, min(4, os.cpu_count() or 1))  # numpy and cv2 release the GIL
_ENCODE_WORKERS = max(1, min(4, os.cpu_count() or 1))
_ENCODE_BUFFER_BYTES = 32 * 2**20  # tifffile batches this many raw tile bytes per encode round
_BIGTIFF_BYTES = 2**31  # uncompressed level-0 bytes above which classic TIFF offsets may overflow

_GLASS_RGB = np.array([242.0, 242.0, 242.0], np.float32)
_EOSIN_RGB = np.array([235.0, 170.0, 200.0], np.float32)
_HEMATOXYLIN_RGB = np.array([90.0, 60.0, 150.0], np.float32)
_GLASS_NOISE = 1.5
_EOSIN_NOISE = 7.0
_CHROMATIN_NOISE = 14.0
_RIM_UM = 0.6  # width of the darker nuclear rim
_RIM_DARKENING = 0.25


@dataclass(frozen=True)
class SyntheticSlideSpec:
    """Everything that determines a synthetic slide: same spec, same pixels and same truth."""

    width: int
    height: int
    mpp: float = 0.25
    seed: int = 0
    objective_power: int = 40
    write_mpp: bool = True
    nucleus_spacing_um: float = 14.0
    nucleus_min_radius_um: float = 3.0
    nucleus_max_radius_um: float = 5.5
    nucleus_jitter: float = 0.15  # largest centre offset from the cell centre, in spacings
    nucleus_fill: float = 0.9  # fraction of lattice cells that hold a nucleus
    tissue_fraction: float | None = None  # None: drawn from the seed in [0.40, 0.55]
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"slide size must be positive, got {self.width}x{self.height}")
        if self.mpp <= 0 or self.nucleus_spacing_um <= 0:
            raise ValueError("mpp and nucleus_spacing_um must be positive")
        if not 0 < self.nucleus_min_radius_um <= self.nucleus_max_radius_um:
            raise ValueError("need 0 < nucleus_min_radius_um <= nucleus_max_radius_um")
        if not 0 <= self.nucleus_jitter <= 0.5 or not 0 <= self.nucleus_fill <= 1:
            raise ValueError("nucleus_jitter must lie in [0, 0.5] and nucleus_fill in [0, 1]")
        if self.tissue_fraction is not None and not 0 < self.tissue_fraction < 1:
            raise ValueError("tissue_fraction must lie in (0, 1)")

    @property
    def spacing_px(self) -> float:
        return self.nucleus_spacing_um / self.mpp

    @property
    def lattice_shape(self) -> tuple[int, int]:
        """(rows, columns) of nucleus lattice cells covering the slide."""
        return math.ceil(self.height / self.spacing_px), math.ceil(self.width / self.spacing_px)

    @property
    def max_radius_px(self) -> float:
        return self.nucleus_max_radius_um / self.mpp

    def to_json(self) -> str:
        fields = {"format": _FORMAT_VERSION, **dataclasses.asdict(self)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SyntheticSlideSpec:
        fields = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})


# --------------------------------------------------------------------------- writing


def write_synthetic_slide(path: str | os.PathLike, spec: SyntheticSlideSpec) -> SyntheticSlideSpec:
    """Write the slide for `spec` to `path` atomically; return the spec."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        _write_pyramid(temp, spec)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return spec


def read_synthetic_spec(path: str | os.PathLike) -> SyntheticSlideSpec | None:
    """The spec embedded by :func:`write_synthetic_slide`; None for any other file."""
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description
    except (OSError, ValueError, tifffile.TiffFileError):
        return None
    for field in description.split("|")[1:]:
        key, sep, value = field.partition("=")
        if sep and key.strip() == SPEC_FIELD:
            try:
                return SyntheticSlideSpec.from_json(value.strip())
            except (ValueError, TypeError):
                return None
    return None


def level_downsamples(spec: SyntheticSlideSpec) -> list[int]:
    """Downsample of each pyramid level: 1, 4, 16, ... until the long side is <= 1024 px."""
    downsamples = [1]
    while max(spec.width, spec.height) // downsamples[-1] > _SMALLEST_LEVEL_SIDE:
        downsamples.append(downsamples[-1] * _LEVEL_FACTOR)
    return downsamples


def level_dimensions(spec: SyntheticSlideSpec) -> list[tuple[int, int]]:
    """(width, height) of each pyramid level."""
    return [(max(1, spec.width // d), max(1, spec.height // d)) for d in level_downsamples(spec)]


def _write_pyramid(path: Path, spec: SyntheticSlideSpec) -> None:
    bigtiff = spec.width * spec.height * 3 > _BIGTIFF_BYTES
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        for level, (d, (w, h)) in enumerate(zip(level_downsamples(spec), level_dimensions(spec))):
            tiles = _level_tiles(spec, d, w, h)
            try:
                tw.write(
                    tiles,
                    shape=(h, w, 3),
                    dtype="uint8",
                    tile=(TILE_SIZE, TILE_SIZE),
                    compression="jpeg",
                    compressionargs={"level": spec.jpeg_quality},
                    photometric="rgb",
                    description=_description(spec, level, w, h),
                    metadata=None,
                    subfiletype=0,
                    maxworkers=_ENCODE_WORKERS,
                    buffersize=_ENCODE_BUFFER_BYTES,
                )
            finally:
                tiles.close()


def _description(spec: SyntheticSlideSpec, level: int, w: int, h: int) -> str:
    size = f"{spec.width}x{spec.height} [0,0 {spec.width}x{spec.height}] ({TILE_SIZE}x{TILE_SIZE})"
    header = f"Aperio Image Library v12.0.0\r\n{size}"
    if level > 0:
        return f"{header} -> {w}x{h} JPEG/RGB Q={spec.jpeg_quality}"
    fields = [f"{header} JPEG/RGB Q={spec.jpeg_quality}", f"AppMag = {spec.objective_power}"]
    if spec.write_mpp:
        fields.append(f"MPP = {spec.mpp!r}")
    fields.append(f"{SPEC_FIELD} = {spec.to_json()}")
    return "|".join(fields)


def _level_tiles(spec: SyntheticSlideSpec, downsample: int, width: int, height: int) -> Iterator[np.ndarray]:
    """Full-size tiles of one level in row-major order; edge tiles carry content past the edge."""
    tiles_x = math.ceil(width / TILE_SIZE)
    tiles_y = math.ceil(height / TILE_SIZE)
    blocks = [
        (tx0 * TILE_SIZE, ty * TILE_SIZE, min(_BLOCK_TILES, tiles_x - tx0))
        for ty in range(tiles_y)
        for tx0 in range(0, tiles_x, _BLOCK_TILES)
    ]

    def render(block: tuple[int, int, int]) -> np.ndarray:
        x, y, n = block
        return render_region(spec, downsample, x, y, n * TILE_SIZE, TILE_SIZE)

    for image in _ordered_map(render, blocks, workers=_RENDER_WORKERS):
        for k in range(image.shape[1] // TILE_SIZE):
            yield image[:, k * TILE_SIZE : (k + 1) * TILE_SIZE]


def _ordered_map(func, items, workers: int) -> Iterator:
    """func over items in threads, results in order, at most 2 * workers in flight."""
    with ThreadPoolExecutor(workers) as executor:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(executor.submit(func, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# --------------------------------------------------------------------------- rendering


def render_region(
    spec: SyntheticSlideSpec, downsample: float, x: int, y: int, width: int, height: int
) -> np.ndarray:
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
        for outline, inner_outline, coarse_outline, strength in zip(
            outlines, inner_outlines, coarse, batch["stain"].tolist()
        ):
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


# --------------------------------------------------------------------------- nuclei


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


def _nuclei_touching(spec, downsample: float, x: int, y: int, width: int, height: int) -> Iterator[dict]:
    """Bands of the nuclei whose outline may reach the level region (x, y, width, height)."""
    margin = spec.max_radius_px + (_CANVAS_PAD + 1) * downsample
    x0, x1 = x * downsample - margin, (x + width) * downsample + margin
    y0, y1 = y * downsample - margin, (y + height) * downsample + margin
    return _nuclei_in_box(spec, x0, y0, x1, y1)


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
