"""The slide file: writing the Aperio-style pyramidal JPEG TIFF atomically and reading its spec back."""

from __future__ import annotations

import math
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile

from .rendering import render_region
from .spec import _BLOCK_TILES, TILE_SIZE, SyntheticSlideSpec, level_dimensions, level_downsamples

SPEC_FIELD = "wsi-assets-synthetic"
_RENDER_WORKERS = max(1, min(4, os.cpu_count() or 1))  # numpy and cv2 release the GIL
_ENCODE_WORKERS = max(1, min(4, os.cpu_count() or 1))
_ENCODE_BUFFER_BYTES = 32 * 2**20  # tifffile batches this many raw tile bytes per encode round
_BIGTIFF_BYTES = 2**31  # uncompressed level-0 bytes above which classic TIFF offsets may overflow


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
