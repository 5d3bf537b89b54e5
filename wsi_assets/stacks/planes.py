"""Reading a TIFF stack lazily as TCZYX, a Y/X region of a block of Z planes at a time.

tifffile's zarr view has one chunk per stored tile or strip, so a region read decodes only the
tiles, or the strips across its rows, that it touches. Uncompressed strips are read row by row from
the file instead (see `storage`): nothing to decode, and no strip read twice by two regions. Nothing here holds a whole plane unless the
caller asks for one: `tiles` walks a plane in tiles of a size the caller's budget allows.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr

from wsi_assets.stacks.axes import StackInfo, open_tiff
from wsi_assets.stacks.blocks import yx_regions
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.storage import (
    rows_readable_raw,
    storage_problem,
    stored_chunk_bytes,
)


class TiffPlanes:
    """The upload's planes in canonical order; only the regions asked for are read."""

    def __init__(self, path: Path, info: StackInfo):
        self.info = info
        self._name = Path(path).name
        self._tif = open_tiff(path)
        self._fd: int | None = None
        try:
            self._series = self._tif.series[0]
            keyframe = self._series.keyframe
            problem = storage_problem(keyframe, self._name)
            if problem:
                raise StackReadError(problem)
            # A pyramidal OME-TIFF's zarr view is a group of levels: the stack is its full-resolution level.
            self._store = self._series.aszarr(level=0)
            self._array = zarr.open_array(self._store, mode="r")
            if rows_readable_raw(keyframe):
                self._fd = os.open(path, os.O_RDONLY)
        except BaseException:
            self._tif.close()
            raise
        self._axes = info.file_axes
        raw = self._fd is not None
        # What reading any row costs: the rows decoded with it (a tile's or strip's height) and their bytes.
        self.rows_decoded_together = (
            1 if raw else int(keyframe.chunks[-2] if keyframe.samplesperpixel == 1 else keyframe.chunks[-3])
        )
        self.chunk_bytes = 0 if raw else stored_chunk_bytes(keyframe)

    def region(self, t: int, c: int, z0: int, z1: int, ys: slice = slice(None), xs: slice = slice(None)) -> np.ndarray:
        """Planes z0..z1-1 of (t, c), rows `ys` and columns `xs` of them, as (Z, rows, columns)."""
        try:
            if self._fd is not None:
                return self._raw_region(t, c, z0, z1, ys, xs)
            wanted = {"T": t, "C": c, "Z": slice(z0, z1), "Y": ys, "X": xs}
            index = tuple(wanted.get(axis, 0) for axis in self._axes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = np.asarray(self._array[index])
        except StackReadError:
            raise
        except Exception as error:  # noqa: BLE001 - a damaged page
            raise StackReadError(
                f"{self._name}: plane t={t} c={c} z={z0} cannot be read ({type(error).__name__}); upload it again"
            ) from None
        return data.reshape(z1 - z0, *data.shape[-2:])

    def tiles(self, t: int, c: int, z0: int, z1: int, tile: tuple[int, int]) -> Iterator[tuple[int, int, np.ndarray]]:
        """(y0, x0, block) over the whole plane of (t, c), planes z0..z1-1: blocks of at most `tile` (rows, columns)."""
        height, width = self.info.shape[3:]
        for ys, xs in yx_regions(height, width, tile):
            yield ys.start, xs.start, self.region(t, c, z0, z1, ys, xs)

    def _page_index(self, t: int, c: int, z: int) -> int:
        wanted = {"T": t, "C": c, "Z": z}
        dims = [(wanted.get(axis, 0), n) for axis, n in zip(self._axes, self._series.shape) if axis not in "YXS"]
        return int(np.ravel_multi_index([i for i, _ in dims], [n for _, n in dims])) if dims else 0

    def _raw_region(self, t: int, c: int, z0: int, z1: int, ys: slice, xs: slice) -> np.ndarray:
        height, width = self.info.shape[3:]
        rows, columns = range(height)[ys], range(width)[xs]
        out = np.empty((z1 - z0, len(rows), len(columns)), self.info.dtype)
        for k, z in enumerate(range(z0, z1)):
            index = self._page_index(t, c, z)
            if len(columns) == width:
                self._raw_rows(index, ys, out[k])
            else:
                out[k] = self._raw_rows(index, ys)[:, xs]
        return out

    def _raw_rows(self, index: int, ys: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `ys` of uncompressed page `index`, read strip part by strip part straight into `out` (made when None)."""
        keyframe = self._series.keyframe
        height, width = keyframe.imagelength, keyframe.imagewidth
        y0, y1, _ = ys.indices(height)
        stored = keyframe.dtype.newbyteorder(self._tif.byteorder)
        row_bytes = width * stored.itemsize
        per_strip = keyframe.rowsperstrip or height
        if self._series.dataoffset is not None:  # one contiguous run of pages: strips follow each other
            base = self._series.dataoffset + index * height * row_bytes
            strip_offset = lambda k: base + k * per_strip * row_bytes  # noqa: E731
        else:
            page = self._series.pages[index]
            if page is None:
                raise StackReadError(f"{self._name}: plane {index} is missing from the file; upload it again")
            offsets = page.dataoffsets
            strip_offset = lambda k: offsets[k]  # noqa: E731
        native = out is not None and stored.isnative and out.dtype == stored
        rows = out if native else np.empty((y1 - y0, width), stored)
        y = y0
        while y < y1:
            strip = y // per_strip
            stop = min(y1, (strip + 1) * per_strip)
            target = memoryview(rows[y - y0 : stop - y0]).cast("B")
            got = os.preadv(self._fd, [target], strip_offset(strip) + (y - strip * per_strip) * row_bytes)
            if got != len(target):
                raise StackReadError(f"{self._name}: truncated file: plane {index} ends early; upload it again")
            y = stop
        if native:
            return out
        if out is None:
            return rows if stored.isnative else rows.astype(stored.newbyteorder("="))
        out[...] = rows
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._store.close()
        self._tif.close()

    def __enter__(self) -> TiffPlanes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
