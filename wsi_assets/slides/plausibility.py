"""Refusing files whose declared size no real slide has, before a single pixel is decoded.

A few hundred KB can declare 100,000 x 100,000 pixels (a TIFF may leave tiles out); decoding
it takes minutes and gigabytes. Rules, cheap header facts only:
- a side over MAX_SIDE_PX (the largest scanners write ~250,000 px);
- more than MAX_COMPRESSION_RATIO raw RGB bytes per file byte at level 0 (JPEG of blank glass
  reaches ~120, a whole real slide 10-50);
- no level coarse enough for whole-slide reads (thumbnail, tissue mask, µm/px estimate): the
  level they decode may hold at most WHOLE_SLIDE_READ_BUDGET_PX (~10 s of decoding, bounded memory).
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.slides.errors import SlideReadError

MAX_SIDE_PX = 10_000_000
MAX_COMPRESSION_RATIO = 1_000.0
WHOLE_SLIDE_READ_BUDGET_PX = 200_000_000
# Formats whose pixels live in other files (MIRAX data folder, VMS/VMU JPEGs, DICOM series): the
# opened file's size says nothing about the pixels, so only the size rules apply to them.
MULTI_FILE_SUFFIXES = {".mrxs", ".vms", ".vmu", ".dcm"}


def check_declared_size(path: Path, width: int, height: int, file_size: int) -> None:
    name = Path(path).name
    if width < 1 or height < 1 or max(width, height) > MAX_SIDE_PX:
        raise SlideReadError(
            f"{name} declares {width} x {height} pixels, which no slide has (at most {MAX_SIDE_PX:,} px a side): the file is damaged or not a slide"
        )
    if Path(path).suffix.lower() in MULTI_FILE_SUFFIXES:
        return
    ratio = width * height * 3 / max(1, file_size)
    if ratio > MAX_COMPRESSION_RATIO:
        raise SlideReadError(
            f"{name} declares {width} x {height} pixels in only {file_size:,} bytes ({ratio:,.0f}:1, real slides stay under "
            f"{MAX_COMPRESSION_RATIO:,.0f}:1): refused unread; the file is damaged or crafted, upload the scanner's original"
        )


def check_whole_slide_read(name: str, level_dimensions, level: int, downsample: float) -> None:
    """Refuse a whole-slide read at `downsample` when the level it would decode is over budget."""
    level_w, level_h = level_dimensions[level]
    pixels = level_w * level_h
    if pixels > WHOLE_SLIDE_READ_BUDGET_PX:
        raise SlideReadError(
            f"{name} has no pyramid level below {WHOLE_SLIDE_READ_BUDGET_PX / 1e6:.0f} Mpx for a {downsample:.0f}x overview "
            f"(it would decode level {level}: {level_w} x {level_h} px); re-save it as a pyramidal TIFF (e.g. vips tiffsave --pyramid --tile)"
        )
