"""Reading a TIFF stack lazily as TCZYX, a block of Z planes at a time (tifffile's zarr view: one chunk per page)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.stacks.axes import StackInfo, open_tiff
from wsi_assets.stacks.errors import StackReadError


class TiffPlanes:
    """The upload's planes in canonical order; only the pages asked for are read."""

    def __init__(self, path: Path, info: StackInfo):
        self.info = info
        self._tif = open_tiff(path)
        self._store = self._tif.series[0].aszarr()
        self._array = zarr.open_array(self._store, mode="r")
        self._axes = info.file_axes

    def block(self, t: int, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes z0..z1-1 of (t, c) as (Z, Y, X)."""
        wanted = {"T": t, "C": c, "Z": slice(z0, z1), "Y": slice(None), "X": slice(None)}
        index = tuple(wanted.get(axis, 0) for axis in self._axes)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = np.asarray(self._array[index])
        except Exception as error:  # noqa: BLE001 - a damaged page
            raise StackReadError(f"{Path(self.info.path).name}: plane t={t} c={c} z={z0} cannot be read ({type(error).__name__}); upload it again") from None
        return data.reshape(z1 - z0, *data.shape[-2:])

    def close(self) -> None:
        self._store.close()
        self._tif.close()

    def __enter__(self) -> TiffPlanes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
