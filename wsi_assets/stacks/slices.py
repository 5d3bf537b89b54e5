"""One 2D plane of a stack, for any (t, z, c), as a PNG holding the plane's own values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsi_assets.core.atomic import write_bytes_atomic
from wsi_assets.core.images import encode_png
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.ome_zarr import open_level


def check_indices(shape: tuple[int, ...], t: int, z: int, c: int) -> None:
    """StackReadError naming the first index outside the stack's T, Z or C range."""
    sizes = {"t": shape[0], "c": shape[1], "z": shape[2]}
    for name, value in (("t", t), ("z", z), ("c", c)):
        size = sizes[name]
        if not 0 <= value < size:
            raise StackReadError(f"{name}={value} is out of range: this stack has {name.upper()}={size} ({name} from 0 to {size - 1})")


def read_slice(zarr_folder: Path, t: int, z: int, c: int) -> np.ndarray:
    """The full-resolution (Y, X) plane at (t, z, c) of the stack's OME-Zarr copy."""
    level0 = open_level(zarr_folder, 0)
    check_indices(level0.shape, t, z, c)
    return np.asarray(level0[t, c, z])


def png_values(plane: np.ndarray) -> tuple[np.ndarray, str]:
    """The plane as PNG can hold it: 8- and 16-bit unsigned values unchanged, anything else stretched to 16 bits."""
    if plane.dtype in (np.uint8, np.uint16):
        return plane, "values unchanged"
    low, high = float(np.min(plane)), float(np.max(plane))
    scaled = (plane.astype(np.float64) - low) / (high - low) if high > low else np.zeros(plane.shape)
    return np.rint(scaled * 65535).astype(np.uint16), f"{plane.dtype} stretched from [{low:.6g}, {high:.6g}] to 0..65535"


def write_slice_png(zarr_folder: Path, t: int, z: int, c: int, target: Path) -> tuple[Path, np.ndarray, str]:
    """Write the (t, z, c) plane to `target` as PNG (atomically); returns the path, the plane and how values were kept."""
    plane = read_slice(zarr_folder, t, z, c)
    values, how = png_values(plane)
    return write_bytes_atomic(Path(target), encode_png(values)), plane, how
