"""The stack's OME-Zarr copy (NGFF 0.5 on Zarr v3): a multiscale pyramid over Y and X, written a Y/X tile of a block of Z planes at a time.

Level 0 has chunks of (1, 1, ≤16, ≤512, ≤512), Blosc-compressed; each further level halves Y and X (2×2 means,
rounded back to the stack's dtype) until the larger side is at most 256 px. Z and T are never
downsampled: a Z step is a physical distance users measure in. Each level is computed from the one
below it as written, tile by tile, so no step holds a whole plane, whatever the plane's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from wsi_assets.core.atomic import atomic_output
from wsi_assets.stacks.axes import StackInfo
from wsi_assets.stacks.blocks import tile_within, yx_regions
from wsi_assets.stacks.channel_colours import channel_active, channel_colours
from wsi_assets.stacks.display_windows import DisplayWindows
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.planes import TiffPlanes

NGFF_VERSION = "0.5"
CHUNK_YX = 512
MAX_CHUNK_Z = 16
SMALLEST_LEVEL_SIDE = 256
# The copy's memory for plane data: one Y/X tile of a block of Z planes with every copy made of it stays within this.
BLOCK_BUDGET_BYTES = 128 * 2**20
# zarr holds a tile's decoded chunks beside the assembled tile when reading, and its encoded chunks when writing.
COPIES = 3
# A pyramid step converts its 2×2 source to float32 one plane at a time, with about as much again in temporaries.
FLOAT_BYTES_PER_SOURCE_PIXEL = 8
# Blosc LZ4 with byte shuffle: on a 4096² uint16 block, 3.3× faster to write and 3.4× faster to read
# than zarr's default zstd, for 27% more disk (0.51 vs 0.40 of the raw size); every later asset
# reads the copy at least once. Blosc is one of the Zarr v3 specification's core codecs (zstd is an extension).
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


@dataclass(frozen=True)
class ZarrSummary:
    levels: int
    level_shapes: list[list[int]]
    chunks: list[int]
    bytes_on_disk: int


def z_chunk(info: StackInfo, source_chunk_bytes: int = 0, budget: int | None = None) -> int:
    """Z planes per chunk: up to 16, fewer when 512 full-width rows of them (with one decoded source tile or
    strip each, `source_chunk_bytes`) would not fit the block budget."""
    budget = BLOCK_BUDGET_BYTES if budget is None else budget
    per_plane = COPIES * min(CHUNK_YX, info.shape[3]) * info.shape[4] * np.dtype(info.dtype).itemsize + source_chunk_bytes
    return int(max(1, min(MAX_CHUNK_Z, info.shape[2], budget // max(per_plane, 1))))


def level_shapes(info: StackInfo) -> list[tuple[int, ...]]:
    t, c, z, y, x = info.shape
    shapes = [(t, c, z, y, x)]
    while max(y, x) > SMALLEST_LEVEL_SIDE:
        y, x = max(1, y // 2), max(1, x // 2)
        shapes.append((t, c, z, y, x))
    return shapes


def downsample2(block: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """2×2 means over the last two axes, cropped to `shape_yx`, in the block's dtype (a 1-px side is repeated, not lost)."""
    y, x = shape_yx
    out = np.empty((*block.shape[:-2], y, x), block.dtype)
    for index in np.ndindex(block.shape[:-2]):  # plane by plane: a float copy of one plane, not of the block
        plane = block[index][: 2 * y, : 2 * x].astype(np.float32)
        if plane.shape != (2 * y, 2 * x):
            plane = np.pad(plane, ((0, 2 * y - plane.shape[0]), (0, 2 * x - plane.shape[1])), mode="edge")
        means = (plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]) * 0.25
        out[index] = np.rint(means) if np.issubdtype(block.dtype, np.integer) else means
    return out


def level_tile(shape: tuple[int, ...], zc: int, itemsize: int, budget: int) -> tuple[int, int]:
    """(rows, columns) written at once at a pyramid level of `shape` after the first: the tile, and its 2×2 source read from the level below."""
    block = zc * itemsize
    return tile_within(budget, COPIES * (4 * block + block) + 4 * FLOAT_BYTES_PER_SOURCE_PIXEL, shape[3], shape[4], CHUNK_YX)


def source_tile(info: StackInfo, zc: int, planes: TiffPlanes, budget: int) -> tuple[int, int]:
    """(rows, columns) read from the TIFF at once: bands of whole source strips (or tile rows) when they fit, so none
    is decoded twice; else 512-row bands, narrowed further only when a plane is too wide for the budget."""
    per_pixel = COPIES * zc * np.dtype(info.dtype).itemsize
    room = max(budget - zc * planes.chunk_bytes, 1)
    height, width = info.shape[3:]
    whole = math.lcm(CHUNK_YX, planes.rows_decoded_together)
    if planes.rows_decoded_together > 1 and min(whole, height) * width * per_pixel <= room:
        return tile_within(room, per_pixel, height, width, whole)
    return tile_within(room, per_pixel, height, width, CHUNK_YX)


def multiscales(info: StackInfo, shapes: list[tuple[int, ...]]) -> dict:
    size = info.physical_size_um
    step = info.time_step_s or 1.0
    axes = [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"),
    ]
    datasets = []
    for level, shape in enumerate(shapes):
        factor_y, factor_x = info.shape[3] / shape[3], info.shape[4] / shape[4]
        scale = [step, 1.0, size.get("z") or 1.0, (size.get("y") or 1.0) * factor_y, (size.get("x") or 1.0) * factor_x]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    return {"name": Path(info.path).name, "axes": axes, "datasets": datasets}


def omero(info: StackInfo, windows: list[dict]) -> dict:
    """How viewers (napari, Fiji, QuPath) first show each channel: its name, its conventional colour, and the
    display window measured from its values (DisplayWindows), so no channel opens black or saturated."""
    names = info.channel_names
    return {
        "channels": [
            {"label": name, "color": colour, "active": active, "window": window}
            for name, colour, active, window in zip(names, channel_colours(names), channel_active(len(names)), windows)
        ]
    }


def omero_channels(zarr_folder: Path) -> list[dict]:
    """The copy's `omero` channel settings ([] for a copy without them)."""
    group = zarr.open_group(str(zarr_folder), mode="r")
    return group.attrs["ome"].get("omero", {}).get("channels", [])


def write_ome_zarr(source: Path, info: StackInfo, target: Path) -> ZarrSummary:
    """Copy the TIFF stack at `source` into an OME-Zarr folder at `target`, which appears whole or not at all."""
    shapes = level_shapes(info)
    itemsize = np.dtype(info.dtype).itemsize
    with atomic_output(Path(target)) as temporary, TiffPlanes(source, info) as planes:
        zc = z_chunk(info, planes.chunk_bytes)
        tiles = [source_tile(info, zc, planes, BLOCK_BUDGET_BYTES)]
        tiles += [level_tile(shape, zc, itemsize, BLOCK_BUDGET_BYTES) for shape in shapes[1:]]
        group = zarr.open_group(str(temporary), mode="w", zarr_format=3)
        windows = DisplayWindows(info.dtype, info.shape[1], math.prod(info.shape[2:]) * info.shape[0])
        arrays = [
            group.create_array(
                str(level),
                shape=shape,
                dtype=info.dtype,
                dimension_names=list("tczyx"),
                compressors=COMPRESSOR,
                chunks=(1, 1, zc, min(CHUNK_YX, shape[3]), min(CHUNK_YX, shape[4])),
            )
            for level, shape in enumerate(shapes)
        ]
        t_size, c_size, z_size = info.shape[:3]
        for t in range(t_size):
            for c in range(c_size):
                for z0 in range(0, z_size, zc):
                    z1 = min(z_size, z0 + zc)
                    for y0, x0, block in planes.tiles(t, c, z0, z1, tiles[0]):
                        arrays[0][t, c, z0:z1, y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] = block
                        windows.add(c, block)
                    for level in range(1, len(arrays)):
                        below, shape = arrays[level - 1], shapes[level]
                        for ys, xs in yx_regions(shape[3], shape[4], tiles[level]):
                            source_block = below[t, c, z0:z1, 2 * ys.start : 2 * ys.stop, 2 * xs.start : 2 * xs.stop]
                            arrays[level][t, c, z0:z1, ys, xs] = downsample2(
                                source_block, (ys.stop - ys.start, xs.stop - xs.start)
                            )
        # Written last, inside the temporary folder: the copy appears with its measured windows or not at all.
        group.attrs["ome"] = {
            "version": NGFF_VERSION,
            "multiscales": [multiscales(info, shapes)],
            "omero": omero(info, windows.windows()),
        }
    written = sum(f.stat().st_size for f in Path(target).rglob("*") if f.is_file())
    return ZarrSummary(
        len(shapes), [list(s) for s in shapes], [1, 1, zc, min(CHUNK_YX, info.shape[3]), min(CHUNK_YX, info.shape[4])], written
    )


def open_level(zarr_folder: Path, level: int = 0) -> zarr.Array:
    """One level of a stack's OME-Zarr copy, opened lazily; StackReadError when it is missing or damaged."""
    try:
        group = zarr.open_group(str(zarr_folder), mode="r")
        return group[str(level)]
    except Exception as error:  # noqa: BLE001
        raise StackReadError(
            f"{Path(zarr_folder).name} level {level} cannot be opened ({type(error).__name__}); run process_stack again"
        ) from None


def level_count(zarr_folder: Path) -> int:
    group = zarr.open_group(str(zarr_folder), mode="r")
    return len(group.attrs["ome"]["multiscales"][0]["datasets"])


def smallest_level_within(zarr_folder: Path, max_side: int) -> int:
    """The finest level whose larger side is at most `max_side` (the coarsest when none is)."""
    count = level_count(zarr_folder)
    for level in range(count):
        if max(open_level(zarr_folder, level).shape[3:]) <= max_side:
            return level
    return count - 1
