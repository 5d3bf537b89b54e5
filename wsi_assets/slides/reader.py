"""Opening a slide with OpenSlide: its metadata, its pixel size, and regions at a chosen µm/px."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import openslide

# µm/px at level 0 for a given objective power, as scanners commonly report it.
MPP_AT_40X = 0.25
FALLBACK_MPP = 0.25  # used when a slide has neither µm/px nor objective power


class SlideReadError(RuntimeError):
    """The file cannot be read as a slide."""


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
    mpp_source: str  # "slide" | "objective power" | "default"
    objective_power: float | None
    file_size_bytes: int

    @property
    def mpp_inferred(self) -> bool:
        return self.mpp_source != "slide"

    @property
    def area_mm2(self) -> float:
        return self.width * self.height * (self.mpp / 1000.0) ** 2

    def as_dict(self) -> dict:
        data = asdict(self)
        data["mpp_inferred"] = self.mpp_inferred
        return data


def open_slide(path: Path) -> openslide.OpenSlide:
    try:
        return openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError) as error:
        raise SlideReadError(f"{Path(path).name}: OpenSlide cannot read this file ({error})") from error


def _float_property(slide: openslide.OpenSlide, name: str) -> float | None:
    value = slide.properties.get(name)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number and math.isfinite(number) and number > 0 else None


def resolve_mpp(slide: openslide.OpenSlide, default_mpp: float = FALLBACK_MPP) -> tuple[float, str]:
    """Level-0 µm/px and where it came from: the slide, its objective power, or the default."""
    mpp_x = _float_property(slide, openslide.PROPERTY_NAME_MPP_X)
    mpp_y = _float_property(slide, openslide.PROPERTY_NAME_MPP_Y)
    if mpp_x and mpp_y:
        return (mpp_x + mpp_y) / 2.0, "slide"
    if mpp_x or mpp_y:
        return float(mpp_x or mpp_y), "slide"
    objective = _float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if objective:
        return MPP_AT_40X * 40.0 / objective, "objective power"
    return default_mpp, "default"


def read_slide_info(path: Path, default_mpp: float = FALLBACK_MPP) -> SlideInfo:
    path = Path(path)
    with open_slide(path) as slide:
        mpp, source = resolve_mpp(slide, default_mpp)
        return SlideInfo(
            path=str(path),
            vendor=slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
            width=slide.dimensions[0],
            height=slide.dimensions[1],
            level_count=slide.level_count,
            level_dimensions=[tuple(d) for d in slide.level_dimensions],
            level_downsamples=[float(d) for d in slide.level_downsamples],
            mpp=mpp,
            mpp_source=source,
            objective_power=_float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
            file_size_bytes=path.stat().st_size,
        )


def level_for_downsample(level_downsamples: list[float], downsample: float) -> int:
    """The coarsest level that is still at least as fine as `downsample` (so we only ever shrink)."""
    best = 0
    for level, level_downsample in enumerate(level_downsamples):
        if level_downsample <= downsample * 1.001:
            best = level
    return best


def read_level_rgb(slide: openslide.OpenSlide, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) at `level`; (x, y) in level-0 pixels. Transparent areas read white."""
    rgba = np.asarray(slide.read_region((int(x), int(y)), level, (int(width), int(height))))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def read_region_at_downsample(
    slide: openslide.OpenSlide, x0: int, y0: int, width: int, height: int, downsample: float
) -> np.ndarray:
    """The level-0 box (x0, y0, width, height) as RGB at `downsample` (level-0 px per output px).

    Output shape is (round(height / downsample), round(width / downsample), 3).
    """
    out_w = max(1, int(round(width / downsample)))
    out_h = max(1, int(round(height / downsample)))
    level = level_for_downsample(list(slide.level_downsamples), downsample)
    level_downsample = slide.level_downsamples[level]
    read_w = max(1, int(math.ceil(width / level_downsample)))
    read_h = max(1, int(math.ceil(height / level_downsample)))
    rgb = read_level_rgb(slide, x0, y0, level, read_w, read_h)
    if rgb.shape[:2] == (out_h, out_w):
        return rgb
    return cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)


def read_whole_slide_at_downsample(slide: openslide.OpenSlide, downsample: float, band_rows: int = 2048) -> np.ndarray:
    """The whole slide at a low resolution (thumbnails, tissue mask), read in bands so memory stays small."""
    width, height = slide.dimensions
    level = level_for_downsample(list(slide.level_downsamples), downsample)
    level_w, level_h = slide.level_dimensions[level]
    level_downsample = slide.level_downsamples[level]
    out_w = max(1, int(round(width / downsample)))
    out_h = max(1, int(round(height / downsample)))
    rows_per_out_row = out_h / level_h
    out = np.empty((out_h, out_w, 3), np.uint8)
    for band_top in range(0, level_h, band_rows):
        band_bottom = min(level_h, band_top + band_rows)
        out_top = int(round(band_top * rows_per_out_row))
        out_bottom = int(round(band_bottom * rows_per_out_row))
        if out_bottom <= out_top:
            continue
        band = read_level_rgb(slide, 0, int(band_top * level_downsample), level, level_w, band_bottom - band_top)
        out[out_top:out_bottom] = cv2.resize(band, (out_w, out_bottom - out_top), interpolation=cv2.INTER_AREA)
    return out
