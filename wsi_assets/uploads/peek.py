"""What a sensor may read of an upload: a TIFF's header and at most a bounded number of its directories.

OpenSlide and tifffile read every directory of a TIFF (and every tag value of the ones they look
at); a file of 100,000 one-pixel pages, or a tag claiming gigabytes, takes them seconds to
minutes. `tiff_outline` walks the directory chain itself, reading a few bytes per directory and
stopping at the first bound, so the sensor knows whether handing the file to those libraries
costs milliseconds (`bounded`) or must be left to the file's run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAX_DIRECTORIES = 1024  # a slide's pyramid has a few; a stack of more planes is checked by its run
MAX_TAG_BYTES = 32 * 2**20  # tile offsets and byte counts of a 200,000² BigTIFF slide are about 13 MB
MAX_ENTRIES = 4096  # a real directory has a few dozen tags
MAX_TOTAL_ENTRIES = 65_536  # what the walk itself parses, whatever the directories hold
DESCRIPTION_HEAD = 4096  # enough to tell OME-XML and ImageJ descriptions apart

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
IMAGE_WIDTH, IMAGE_LENGTH, SAMPLES_PER_PIXEL, DESCRIPTION, NEW_SUBFILE_TYPE = 256, 257, 277, 270, 254
SUB_IFDS = 330  # directories hanging off a page (reduced resolutions): the libraries may read them too


@dataclass(frozen=True)
class TiffOutline:
    directories: int  # counted until the walk stopped (sub-directories included)
    bounded: bool  # the chain ended within the bounds: the libraries may read the whole file's structure
    why_unbounded: str  # e.g. "more than 1,024 images (TIFF directories)"
    description: str  # the first page's ImageDescription, its first DESCRIPTION_HEAD bytes
    planes_like_first: int  # full-resolution one-sample pages of the first page's size, the first one included


class _Reader:
    def __init__(self, handle, size: int, order: str, big: bool):
        self.handle, self.size, self.order, self.big = handle, size, order, big

    def read(self, offset: int, count: int) -> bytes:
        if offset < 0 or offset + count > self.size:
            raise ValueError("points past the end of the file")
        self.handle.seek(offset)
        return self.handle.read(count)

    def unpack(self, fmt: str, offset: int):
        return struct.unpack(self.order + fmt, self.read(offset, struct.calcsize(self.order + fmt)))


def _entries(reader: _Reader, offset: int) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """(tag, type, count, value field) of each entry of the directory at `offset`, and the next directory's offset."""
    count_fmt, entry_size, value_size, next_fmt = ("Q", 20, 8, "Q") if reader.big else ("H", 12, 4, "I")
    (count,) = reader.unpack(count_fmt, offset)
    if count > MAX_ENTRIES:
        raise OverflowError(f"a directory of {count:,} tags")
    start = offset + struct.calcsize(count_fmt)
    raw = reader.read(start, count * entry_size)
    head = "HHQ" if reader.big else "HHI"
    entries = []
    for i in range(count):
        tag, kind, n = struct.unpack(reader.order + head, raw[i * entry_size : i * entry_size + entry_size - value_size])
        entries.append((tag, kind, n, raw[i * entry_size + entry_size - value_size : (i + 1) * entry_size]))
    (following,) = reader.unpack(next_fmt, start + count * entry_size)
    return entries, following


def _number(reader: _Reader, kind: int, value: bytes) -> int:
    if kind == 3:
        return struct.unpack(reader.order + "H", value[:2])[0]
    if kind == 16:
        return struct.unpack(reader.order + "Q", value[:8])[0]
    return struct.unpack(reader.order + "I", value[:4])[0]


def _text(reader: _Reader, count: int, value: bytes) -> str:
    inline = 8 if reader.big else 4
    if count <= inline:
        data = value[:count]
    else:
        offset = struct.unpack(reader.order + ("Q" if reader.big else "I"), value[:inline])[0]
        data = reader.read(offset, min(count, DESCRIPTION_HEAD))
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def tiff_outline(path: Path) -> TiffOutline | None:
    """The file's outline, or None when its first bytes are not a TIFF header. Reads about 1.3 MB at most.

    A damaged chain (an offset past the end, a loop) ends the walk: the libraries report the damage.
    """
    with open(path, "rb") as handle:
        header = handle.read(16)
        order = {b"II": "<", b"MM": ">"}.get(header[:2])
        if order is None or len(header) < 8:
            return None
        (version,) = struct.unpack(order + "H", header[2:4])
        if version not in (42, 43):
            return None
        big = version == 43
        reader = _Reader(handle, handle.seek(0, 2), order, big)
        offset = struct.unpack(order + ("Q" if big else "I"), header[8:16] if big else header[4:8])[0]
        seen: set[int] = set()
        directories = tag_bytes = entry_count = planes = 0
        description, first_shape, why = "", None, ""
        while offset and offset not in seen:
            seen.add(offset)
            try:
                entries, following = _entries(reader, offset)
            except OverflowError as error:
                why = str(error)
                break
            except (ValueError, struct.error):
                break
            tags = {tag: (kind, count, value) for tag, kind, count, value in entries}
            directories += 1 + (tags[SUB_IFDS][1] if SUB_IFDS in tags else 0)
            entry_count += len(entries)
            tag_bytes += sum(count * _TYPE_SIZES.get(kind, 1) for _, kind, count, _ in entries)
            if directories > MAX_DIRECTORIES:
                why = f"more than {MAX_DIRECTORIES:,} images (TIFF directories)"
            elif entry_count > MAX_TOTAL_ENTRIES:
                why = f"more than {MAX_TOTAL_ENTRIES:,} tags in its first {directories:,} images"
            elif tag_bytes > MAX_TAG_BYTES:
                why = f"over {MAX_TAG_BYTES // 2**20} MiB of tag data in its first {directories:,} images"
            if why:
                break
            numbers = {
                t: _number(reader, tags[t][0], tags[t][2])
                for t in (IMAGE_WIDTH, IMAGE_LENGTH, SAMPLES_PER_PIXEL, NEW_SUBFILE_TYPE)
                if t in tags
            }
            shape = (numbers.get(IMAGE_WIDTH), numbers.get(IMAGE_LENGTH))
            if first_shape is None:
                first_shape = shape
                if DESCRIPTION in tags:
                    try:
                        description = _text(reader, tags[DESCRIPTION][1], tags[DESCRIPTION][2])
                    except (ValueError, struct.error):
                        description = ""
            if shape == first_shape and numbers.get(SAMPLES_PER_PIXEL, 1) == 1 and not numbers.get(NEW_SUBFILE_TYPE, 0) & 1:
                planes += 1
            offset = following
    return TiffOutline(directories, not why, why, description, planes)


def looks_like_a_stack(outline: TiffOutline) -> bool:
    """Several planes by the outline alone: OME-XML, an ImageJ hyperstack, or same-sized one-sample pages."""
    text = outline.description.lstrip()
    return "<OME" in text[:DESCRIPTION_HEAD] or text.startswith("ImageJ=") or outline.planes_like_first > 1
