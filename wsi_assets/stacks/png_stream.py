"""A grayscale PNG written a band of rows at a time, so a plane of any size is never held whole.

PNG allows images up to 2^31 - 1 px a side; its pixel data is one zlib stream over the rows, each
prefixed by a filter byte, cut into IDAT chunks. 16-bit samples are big-endian.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Level 1 as OpenCV's default: a slice of a 60000² plane stays a matter of seconds, not minutes.
COMPRESSION_LEVEL = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


class GrayPngWriter:
    """Write `height` rows of `width` uint8 or uint16 samples to `handle`, band by band, top to bottom."""

    def __init__(self, handle: BinaryIO, width: int, height: int, dtype: np.dtype):
        dtype = np.dtype(dtype)
        if dtype not in (np.uint8, np.uint16):
            raise ValueError(f"a grayscale PNG holds uint8 or uint16 samples, not {dtype}")
        self._handle, self._width, self._height, self._rows = handle, width, height, 0
        self._big_endian = dtype.newbyteorder(">")
        self._zlib = zlib.compressobj(COMPRESSION_LEVEL)
        handle.write(SIGNATURE)
        handle.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, dtype.itemsize * 8, 0, 0, 0, 0)))

    def write_rows(self, band: np.ndarray) -> None:
        if band.ndim != 2 or band.shape[1] != self._width:
            raise ValueError(f"rows of {self._width} samples expected, got {band.shape}")
        rows = np.empty((band.shape[0], 1 + self._width * self._big_endian.itemsize), np.uint8)
        rows[:, 0] = 0  # filter type None
        rows[:, 1:] = band.astype(self._big_endian, copy=False).view(np.uint8).reshape(band.shape[0], -1)
        self._emit(self._zlib.compress(rows.tobytes()))
        self._rows += band.shape[0]

    def close(self) -> None:
        if self._rows != self._height:
            raise ValueError(f"{self._rows} rows written of {self._height}")
        self._emit(self._zlib.flush())
        self._handle.write(_chunk(b"IEND", b""))

    def _emit(self, data: bytes) -> None:
        if data:
            self._handle.write(_chunk(b"IDAT", data))
