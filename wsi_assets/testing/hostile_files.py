"""Hostile but cheap-to-make upload files: the kinds that once stalled or crashed a sensor tick.

Each writer makes a real file at `path` and returns it. Big files are written in a few seconds
(repeated text, or sparse with truncate), so tests and `benchmarks/sensor_tick.py` share them.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

CSV_HEADER = "slide,annotator,adequacy,diagnosis_codes,comment\n"


def _write(path: Path, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def deep_json(path: Path, depth: int = 100_000) -> Path:
    """Valid JSON nested far deeper than Python's recursion limit (json.loads raises RecursionError)."""
    return _write(path, "[" * depth + "]" * depth)


def huge_csv_field(path: Path, chars: int = 200_000) -> Path:
    """A slides.csv whose comment is longer than the csv module's field limit (131,072 characters)."""
    return _write(path, CSV_HEADER + "mine,dr_a,adequate,," + "x" * chars + "\n")


def big_slides_csv(path: Path, megabytes: float = 9.9) -> Path:
    """A legal slides.csv of about `megabytes` MB (one row per slide and annotator)."""
    rows, size, i = [CSV_HEADER], len(CSV_HEADER), 0
    while size < megabytes * 1e6:
        row = f"s{i:07d},dr_{i % 7},adequate,C50.9;C61,fine\n"
        rows.append(row)
        size += len(row)
        i += 1
    return _write(path, "".join(rows))


def big_review(path: Path, cells: int = 700_000) -> Path:
    """A legal QuPath GeoJSON of `cells` small octagonal nuclei (about 200 bytes each: 700,000 cells are 140 MB)."""
    offsets = [(6, 0), (4, 4), (0, 6), (-4, 4), (-6, 0), (-4, -4), (0, -6), (-4, -4)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as out:
        out.write('{"type":"FeatureCollection","features":[')
        for i in range(cells):
            x, y = 20 + (i % 2000) * 15, 20 + (i // 2000) * 15
            ring = [[x + dx, y + dy] for dx, dy in offsets] + [[x + 6, y]]
            feature = {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "detection"},
            }
            out.write(("," if i else "") + json.dumps(feature, separators=(",", ":")))
        out.write("]}")
    return path


def one_polygon_review(path: Path, vertices: int = 1_000_000) -> Path:
    """A legal review of one cell whose outline has `vertices` points (about 40 bytes each)."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    ring = np.stack([500 + 400 * np.cos(angles), 500 + 400 * np.sin(angles)], axis=1).round(3).tolist()
    ring.append(ring[0])
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "detection"},
    }
    return _write(path, json.dumps([feature], separators=(",", ":")))


def many_pages_tiff(path: Path, pages: int = 100_000) -> Path:
    """A TIFF of `pages` one-pixel grayscale pages: tiny, but every page is a directory to parse."""
    tag_count = 8
    ifd_size = 2 + tag_count * 12 + 4
    data = bytearray(b"II*\0" + struct.pack("<I", 8))
    pixel_at = 8 + pages * ifd_size
    for page in range(pages):
        following = 8 + (page + 1) * ifd_size if page + 1 < pages else 0
        data += struct.pack("<H", tag_count)
        for tag, kind, value in (
            (256, 4, 1),
            (257, 4, 1),
            (258, 3, 8),
            (259, 3, 1),
            (262, 3, 1),
            (273, 4, pixel_at),
            (278, 4, 1),
            (279, 4, 1),
        ):
            data += struct.pack("<HHII", tag, kind, 1, value)
        data += struct.pack("<I", following)
    return _write(path, bytes(data) + b"\0")


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk space (reading it yields zeros)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(size)
    return path


def gzip_bomb(path: Path, megabytes: int = 200) -> Path:
    """A few hundred KB that inflate to `megabytes` MB of zeros, under a name that invites reading it."""
    return _write(path, gzip.compress(b"\0" * (megabytes * 2**20), compresslevel=9))


def tiff_bomb(path: Path, side: int = 100_000, tile: int = 1024) -> Path:
    """A valid tiled TIFF claiming one side×side page whose tiles all point at one small zlib blob (side² bytes once decoded)."""
    blob = zlib.compress(b"\0" * tile * tile, 9)
    tiles = (-(-side // tile)) ** 2
    tag_count = 10
    ifd_at = 8
    offsets_at = ifd_at + 2 + tag_count * 12 + 4
    counts_at = offsets_at + 4 * tiles
    blob_at = counts_at + 4 * tiles
    entries = [  # (tag, type, count, value): type 3 SHORT, 4 LONG
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 1, 8),
        (259, 3, 1, 8),
        (262, 3, 1, 1),
        (277, 3, 1, 1),
        (322, 3, 1, tile),
        (323, 3, 1, tile),
        (324, 4, tiles, offsets_at),
        (325, 4, tiles, counts_at),
    ]
    data = bytearray(b"II*\0" + struct.pack("<I", ifd_at) + struct.pack("<H", tag_count))
    for tag, kind, count, value in entries:
        data += struct.pack("<HHII", tag, kind, count, value)
    data += struct.pack("<I", 0)
    data += struct.pack(f"<{tiles}I", *([blob_at] * tiles)) + struct.pack(f"<{tiles}I", *([len(blob)] * tiles)) + blob
    return _write(path, bytes(data))


def fifo(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def symlink_loop(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path)
    return path
