"""Test helpers: small real TIFF stacks written with tifffile, and damaged variants of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from wsi_assets.stacks.synthetic import (
    StackSpec,
    write_imagej_tiff,
    write_large_plane_tiff,
    write_ome_tiff,
    write_plain_tiff,
)

# Big enough for two pyramid levels and several Y/X chunks, small enough to hold in numpy.
SMALL = StackSpec(t=2, c=3, z=5, y=600, x=700, seed=3, channel_names=("DAPI", "GFP", "RFP"))


def ome_stack(folder: Path, spec: StackSpec = SMALL, name: str = "cells01.ome.tif") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_ome_tiff(folder / name, spec)


def imagej_stack(folder: Path, spec: StackSpec = SMALL, name: str = "hyper.tif") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_imagej_tiff(folder / name, spec)


def plain_stack(folder: Path, z: int = 6, name: str = "plain.tif") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_plain_tiff(folder / name, StackSpec(t=1, c=1, z=z, y=64, x=80, seed=5))


def two_unnamed_axes(folder: Path) -> Path:
    """Pages of shape (3, 4): tifffile records the shape but not which axis is T and which is Z."""
    path = folder / "unnamed.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 32, 32), np.uint16), photometric="minisblack")
    return path


def image_2d(folder: Path) -> Path:
    path = folder / "flat.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16), photometric="minisblack")
    return path


def truncated(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def inconsistent_ome(source: Path, target: Path) -> Path:
    """The OME-XML claims 9 Z planes where the file holds 5 (same byte length, so offsets stay valid)."""
    data = source.read_bytes()
    assert data.count(b'SizeZ="5"') == 1
    target.write_bytes(data.replace(b'SizeZ="5"', b'SizeZ="9"'))
    return target


def large_plane_stack(folder: Path, side: int, channels: int = 2, name: str = "large.ome.tif") -> Path:
    """A tiled, zlib-compressed OME-TIFF of `channels` uint8 planes of side × side px, small on disk (see `large_plane_values`)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_large_plane_tiff(folder / name, side, channels)
