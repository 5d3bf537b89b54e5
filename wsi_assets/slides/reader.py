"""Opening a slide with OpenSlide: its metadata and regions at a chosen µm/px.

Every failure to use a file is a SlideReadError whose one line names the file and what to do;
implausible files (see slides.plausibility) are refused before any pixel is decoded.
`read_slide_info` (what a slide is, with its level-0 µm/px) is in slides.mpp, which reads through this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import openslide

from wsi_assets.slides.errors import SlideReadError, SlideSettingsError
from wsi_assets.slides.plausibility import check_declared_size, check_whole_slide_read
from wsi_assets.slides.resolution import is_plausible_mpp

__all__ = ["SlideInfo", "SlideReadError", "SlideSettingsError", "open_slide", "resolve_mpp"]

# µm/px at level 0 for a given objective power, as scanners commonly report it.
MPP_AT_40X = 0.25
FALLBACK_MPP = 0.25  # used when a slide has neither µm/px nor objective power and no nuclei are measurable
ESTIMATED = "nucleus-size estimate"
INFERRED_SOURCES = ("objective power", ESTIMATED, "default")
THUMBNAIL_LONG_SIDE = 512  # the overview defs/slides.py reads; the budget check must cover it


@dataclass(frozen=True)
class SlideInfo:
    path: str
    vendor: str
    width: int
    height: int
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float  # level-0 µm/px actually used
    mpp_source: str  # "sidecar <stem>.yaml" | "branch.yaml" | "slide" | "objective power" | ESTIMATED | "default"
    objective_power: float | None
    file_size_bytes: int
    mpp_detail: str = ""  # how an inferred or stated value was found, for the run log and exports

    @property
    def mpp_inferred(self) -> bool:
        return self.mpp_source in INFERRED_SOURCES

    @property
    def area_mm2(self) -> float:
        return self.width * self.height * (self.mpp / 1000.0) ** 2

    def as_dict(self) -> dict:
        data = asdict(self)
        data["mpp_inferred"] = self.mpp_inferred
        return data


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_slide(path: Path) -> openslide.OpenSlide:
    """The slide opened, or SlideReadError when OpenSlide cannot read it or its declared size is implausible."""
    path = Path(path)
    try:
        slide = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError, OSError, ValueError) as error:
        raise SlideReadError(f"{path.name}: OpenSlide cannot read this file ({first_line(error)})") from error
    try:
        width, height = slide.dimensions
        check_declared_size(path, width, height, path.stat().st_size if path.is_file() else 0)
    except BaseException:
        slide.close()
        raise
    return slide


def float_property(slide: openslide.OpenSlide, name: str) -> float | None:
    value = slide.properties.get(name)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number and math.isfinite(number) and number > 0 else None


def resolve_mpp(slide: openslide.OpenSlide, default_mpp: float = FALLBACK_MPP) -> tuple[float, str]:
    """Level-0 µm/px and where it came from: the slide, its objective power, or the default."""
    mpp_x = float_property(slide, openslide.PROPERTY_NAME_MPP_X)
    mpp_y = float_property(slide, openslide.PROPERTY_NAME_MPP_Y)
    stated = [value for value in (mpp_x, mpp_y) if value and is_plausible_mpp(value)]
    if stated:
        return sum(stated) / len(stated), "slide"
    objective = float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if objective:
        return MPP_AT_40X * 40.0 / objective, "objective power"
    return default_mpp, "default"


def level_for_downsample(level_downsamples: list[float], downsample: float) -> int:
    """The coarsest level that is still at least as fine as `downsample` (so we only ever shrink)."""
    best = 0
    for level, level_downsample in enumerate(level_downsamples):
        if level_downsample <= downsample * 1.001:
            best = level
    return best


def read_level_rgb(slide: openslide.OpenSlide, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) at `level`; (x, y) in level-0 pixels. Transparent areas read white.

    A tile that cannot be decoded is a SlideReadError naming the file and the level-0 box, so the
    user knows which slide is damaged and where.
    """
    downsample = 1.0
    try:
        # Before the read: after an error OpenSlide refuses every call on this slide.
        downsample = slide.level_downsamples[level] if 0 <= level < slide.level_count else 1.0
        rgba = np.asarray(slide.read_region((int(x), int(y)), level, (int(width), int(height))))
    except openslide.OpenSlideError as error:
        box = f"x {int(x)}-{int(x + width * downsample)}, y {int(y)}-{int(y + height * downsample)}"
        raise SlideReadError(
            f"{_slide_name(slide)}: cannot decode the region at level-0 {box} (level {level}): the file is damaged there "
            f"({first_line(error)}); re-export or re-upload the slide"
        ) from error
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def read_region_at_downsample(
    slide: openslide.OpenSlide, x0: int, y0: int, width: int, height: int, downsample: float
) -> np.ndarray:
    """The level-0 box (x0, y0, width, height) as RGB at `downsample` (level-0 px per output px).

    Output shape is (round(height / downsample), round(width / downsample), 3).
    """
    out_w = max(1, round(width / downsample))
    out_h = max(1, round(height / downsample))
    level = level_for_downsample(list(slide.level_downsamples), downsample)
    level_downsample = slide.level_downsamples[level]
    read_w = max(1, math.ceil(width / level_downsample))
    read_h = max(1, math.ceil(height / level_downsample))
    rgb = read_level_rgb(slide, x0, y0, level, read_w, read_h)
    if rgb.shape[:2] == (out_h, out_w):
        return rgb
    return cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)


def _slide_name(slide: openslide.OpenSlide) -> str:
    # openslide-python keeps the path only privately; the name is what makes the message actionable.
    return Path(getattr(slide, "_filename", "") or "slide").name


def read_whole_slide_at_downsample(slide: openslide.OpenSlide, downsample: float, band_rows: int = 2048) -> np.ndarray:
    """The whole slide at a low resolution (thumbnails, tissue mask), read in bands so memory stays small."""
    width, height = slide.dimensions
    level = level_for_downsample(list(slide.level_downsamples), downsample)
    check_whole_slide_read(_slide_name(slide), slide.level_dimensions, level, downsample)
    level_w, level_h = slide.level_dimensions[level]
    level_downsample = slide.level_downsamples[level]
    out_w = max(1, round(width / downsample))
    out_h = max(1, round(height / downsample))
    rows_per_out_row = out_h / level_h
    out = np.empty((out_h, out_w, 3), np.uint8)
    for band_top in range(0, level_h, band_rows):
        band_bottom = min(level_h, band_top + band_rows)
        out_top = round(band_top * rows_per_out_row)
        out_bottom = round(band_bottom * rows_per_out_row)
        if out_bottom <= out_top:
            continue
        band = read_level_rgb(slide, 0, int(band_top * level_downsample), level, level_w, band_bottom - band_top)
        out[out_top:out_bottom] = cv2.resize(band, (out_w, out_bottom - out_top), interpolation=cv2.INTER_AREA)
    return out
