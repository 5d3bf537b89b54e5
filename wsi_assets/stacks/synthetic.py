"""Synthetic TCZYX stacks for tests, demos and benchmarks: channels mixed from known sources, written plane by plane.

Each channel is `offset[c] + mixing[c] @ sources + noise`, where the sources are smooth patterns
that change with t and z. The channel covariance is therefore close to rank `n_sources`, so the
first `n_sources` principal components explain nearly all the variance, and `plane(t, c, z)`
gives any plane's exact values to compare with what the pipeline read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile


@dataclass(frozen=True)
class StackSpec:
    t: int = 2
    c: int = 3
    z: int = 5
    y: int = 96
    x: int = 128
    n_sources: int = 2
    seed: int = 0
    noise: float = 2.0
    physical_size_um: tuple[float, float, float] = (2.0, 0.5, 0.5)  # z, y, x
    time_step_s: float = 30.0
    channel_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.t, self.c, self.z, self.y, self.x)

    @property
    def names(self) -> tuple[str, ...]:
        return self.channel_names or tuple(f"ch{i}" for i in range(self.c))

    def mixing(self) -> np.ndarray:
        """(C, n_sources) non-negative weights: how much of each source each channel sees."""
        return np.random.default_rng(self.seed).uniform(0.2, 1.0, (self.c, self.n_sources))

    def offsets(self) -> np.ndarray:
        return 100.0 + 50.0 * np.arange(self.c)


def _sources(spec: StackSpec, t: int, z: int) -> np.ndarray:
    """(n_sources, Y, X) smooth patterns in 0..1000, different for every source, t and z."""
    yy = np.linspace(0, 1, spec.y, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, spec.x, dtype=np.float32)[None, :]
    found = []
    for k in range(spec.n_sources):
        phase = 0.7 * t + 0.3 * z + 1.3 * k
        found.append(500 + 500 * np.sin(2 * np.pi * ((k + 1) * xx + phase)) * np.cos(2 * np.pi * ((k + 2) * yy - phase)))
    return np.stack(found)


def _noise(spec: StackSpec, t: int, c: int, z: int) -> np.ndarray:
    # One small random tile per plane, repeated: noise without the cost of Y×X random draws per plane.
    rng = np.random.default_rng((spec.seed, t, c, z))
    tile = rng.normal(0, spec.noise, (64, 64)).astype(np.float32)
    reps = (-(-spec.y // 64), -(-spec.x // 64))
    return np.tile(tile, reps)[: spec.y, : spec.x]


def plane(spec: StackSpec, t: int, c: int, z: int, sources: np.ndarray | None = None) -> np.ndarray:
    sources = _sources(spec, t, z) if sources is None else sources
    values = spec.offsets()[c] + np.tensordot(spec.mixing()[c].astype(np.float32), sources, axes=1) + _noise(spec, t, c, z)
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


def planes_in_order(spec: StackSpec, order: str) -> Iterator[np.ndarray]:
    """Every plane, in the order of `order`'s three leading axes (e.g. "TZC": t outermost, c innermost)."""
    ranges = {"T": range(spec.t), "C": range(spec.c), "Z": range(spec.z)}
    a, b, c_axis = order
    for i in ranges[a]:
        for j in ranges[b]:
            for k in ranges[c_axis]:
                index = dict(zip(order, (i, j, k)))
                yield plane(spec, index["T"], index["C"], index["Z"])


def as_array(spec: StackSpec) -> np.ndarray:
    """The whole stack (T, C, Z, Y, X) in memory: for small test stacks only."""
    data = np.empty(spec.shape, np.uint16)
    for t in range(spec.t):
        for z in range(spec.z):
            sources = _sources(spec, t, z)
            for c in range(spec.c):
                data[t, c, z] = plane(spec, t, c, z, sources)
    return data


def write_ome_tiff(path: Path, spec: StackSpec) -> Path:
    """An OME-TIFF (BigTIFF, planes in TZC order) with physical sizes, time step and channel names."""
    z_um, y_um, x_um = spec.physical_size_um
    tifffile.imwrite(
        str(path),
        data=planes_in_order(spec, "TZC"),
        shape=(spec.t, spec.z, spec.c, spec.y, spec.x),
        dtype=np.uint16,
        bigtiff=True,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "TZCYX",
            "PhysicalSizeX": x_um,
            "PhysicalSizeY": y_um,
            "PhysicalSizeZ": z_um,
            "TimeIncrement": spec.time_step_s,
            "Channel": {"Name": list(spec.names)},
        },
    )
    return Path(path)


def write_imagej_tiff(path: Path, spec: StackSpec) -> Path:
    """An ImageJ hyperstack (TZCYX) with µm per pixel, Z spacing and frame interval."""
    z_um, y_um, x_um = spec.physical_size_um
    tifffile.imwrite(
        str(path),
        data=planes_in_order(spec, "TZC"),
        shape=(spec.t, spec.z, spec.c, spec.y, spec.x),
        dtype=np.uint16,
        imagej=True,
        resolution=(1 / x_um, 1 / y_um),
        photometric="minisblack",
        metadata={"axes": "TZCYX", "spacing": z_um, "unit": "um", "finterval": spec.time_step_s},
    )
    return Path(path)


def write_plain_tiff(path: Path, spec: StackSpec) -> Path:
    """A plain multi-page TIFF with no axis names: one page per Z plane (spec must have t = c = 1)."""
    if spec.t != 1 or spec.c != 1:
        raise ValueError("a plain multi-page TIFF holds one unnamed axis: use t=1 and c=1")
    tifffile.imwrite(
        str(path),
        data=planes_in_order(spec, "TCZ"),
        shape=(spec.z, spec.y, spec.x),
        dtype=np.uint16,
        metadata=None,
        photometric="minisblack",
    )
    return Path(path)


def write_large_plane_tiff(path: Path, side: int, channels: int = 2) -> Path:
    """A tiled (512²), zlib-compressed OME-TIFF of `channels` uint8 planes of side × side px: a few MB on disk whatever `side`.

    Each tile is zeros but for its first three pixels: channel + 1, tile row and tile column (mod
    256), so a copy that puts a tile in the wrong place is caught. For tests and benchmarks of
    planes far larger than memory.
    """
    per_side = -(-side // 512)

    def tiles() -> Iterator[np.ndarray]:
        for c in range(channels):
            for row in range(per_side):
                for column in range(per_side):
                    tile = np.zeros((512, 512), np.uint8)
                    tile[0, :3] = (c + 1, row % 256, column % 256)
                    yield tile

    names = [f"ch{c}" for c in range(channels)]
    tifffile.imwrite(
        str(path),
        tiles(),
        shape=(channels, side, side),
        dtype=np.uint8,
        tile=(512, 512),
        compression="zlib",
        bigtiff=True,
        ome=True,
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": names}},
    )
    return Path(path)


def large_plane_values(side: int, c: int, ys: slice, xs: slice) -> np.ndarray:
    """The values `write_large_plane_tiff` wrote at rows `ys` and columns `xs` of channel c."""
    region = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
    for y0 in range(ys.start - ys.start % 512, ys.stop, 512):
        for x0 in range(xs.start - xs.start % 512, xs.stop, 512):
            for k, value in enumerate((c + 1, (y0 // 512) % 256, (x0 // 512) % 256)):
                y, x = y0 - ys.start, x0 + k - xs.start
                if 0 <= y < region.shape[0] and 0 <= x < region.shape[1] and x0 + k < side:
                    region[y, x] = value
    return region
