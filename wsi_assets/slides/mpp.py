"""What a slide is and its level-0 µm/px: slides.reader reads it, slides.mpp_estimate measures its nuclei.

read_slide_info refuses a file that cannot be used with a one-line SlideReadError.

Level-0 µm/px, first found wins (the `mpp_source` stored with the slide):
1. stated by the user: "<stem>.yaml" beside the slide, then the branch's "branch.yaml" (slides.resolution);
2. "slide": the file's own µm/px metadata (when plausible);
3. "objective power": 0.25 µm/px at 40x, scaled;
4. "nucleus-size estimate": from the typical nucleus diameter (slides.mpp_estimate);
5. "default": the configured default_mpp, when no nuclei could be measured.
3-5 are inferred (`mpp_inferred`), and exports say so.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openslide

from wsi_assets.core.quoting import short_repr
from wsi_assets.slides.errors import SlideReadError, SlideSettingsError
from wsi_assets.slides.mpp_estimate import (
    FINE_BLOB_PX,
    MAX_REGIONS,
    MIN_NUCLEI,
    MIN_SATURATION,
    REGION_PX,
    TYPICAL_NUCLEUS_UM,
    MppEstimate,
    NucleusSizes,
    nucleus_sizes,
    pooled,
    typical_diameter,
)
from wsi_assets.slides.plausibility import check_whole_slide_read
from wsi_assets.slides.reader import (
    ESTIMATED,
    FALLBACK_MPP,
    THUMBNAIL_LONG_SIDE,
    SlideInfo,
    first_line,
    float_property,
    level_for_downsample,
    open_slide,
    read_level_rgb,
    read_region_at_downsample,
    resolve_mpp,
)
from wsi_assets.slides.resolution import PLAUSIBLE_MPP, is_plausible_mpp, stated_mpp
from wsi_assets.slides.tissue import tissue_mask_downsample


def _tissue_points(slide: openslide.OpenSlide) -> list[tuple[int, int]]:
    """Level-0 centres of up to MAX_REGIONS tissue regions, spread over the tissue of the coarsest level."""
    level = slide.level_count - 1
    width, height = slide.level_dimensions[level]
    downsample = slide.level_downsamples[level]
    rgb = read_level_rgb(slide, 0, 0, level, width, height)
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    rows, cols = np.nonzero(saturation > MIN_SATURATION)
    if len(rows) == 0:
        return []
    picks = np.linspace(0, len(rows) - 1, MAX_REGIONS + 2)[1:-1].astype(int)
    return [(int(cols[i] * downsample), int(rows[i] * downsample)) for i in picks]


def _measure_at(slide: openslide.OpenSlide, points, scale: float) -> tuple[NucleusSizes, int]:
    """Blobs of regions of REGION_PX output px at `scale` level-0 px per px, diameters in output px."""
    width, height = slide.dimensions
    side = int(REGION_PX * scale)
    found = []
    for cx, cy in points:
        x0 = int(min(max(0, cx - side // 2), max(0, width - side)))
        y0 = int(min(max(0, cy - side // 2), max(0, height - side)))
        found.append(nucleus_sizes(read_region_at_downsample(slide, x0, y0, min(side, width), min(side, height), scale)))
    return pooled(found), sum(1 for f in found if len(f))


def estimate_mpp_from_nuclei(slide: openslide.OpenSlide) -> MppEstimate | None:
    """Level-0 µm/px from the typical nucleus size, or None when too few nuclei are seen."""
    points = _tissue_points(slide)
    if not points:
        return None
    scale = 1.0
    for _ in range(4):
        sizes, regions = _measure_at(slide, points, scale)
        if len(sizes) < MIN_NUCLEI:
            return None
        typical = typical_diameter(sizes.diameters, sizes.weights) * scale
        if typical / scale <= FINE_BLOB_PX or scale * REGION_PX * 4 > max(slide.dimensions):
            break
        scale *= 4  # large nuclei: few fit a region, so look at a wider field
    return MppEstimate(mpp=TYPICAL_NUCLEUS_UM / typical, nuclei=len(sizes), diameter_px=typical, regions=regions)


def slide_mpp(path: Path, slide: openslide.OpenSlide, default_mpp: float = FALLBACK_MPP) -> tuple[float, str, str]:
    """(level-0 µm/px, source, detail) in the order of the module docstring."""
    stated = stated_mpp(path)
    if stated is not None:
        return stated.mpp, stated.source, f"stated by the user in {stated.source.split()[-1]}"
    mpp, source = resolve_mpp(slide, default_mpp)
    if source != "default":
        return mpp, source, ""
    estimate = estimate_mpp_from_nuclei(slide)
    if estimate is not None:
        return estimate.mpp, ESTIMATED, estimate.detail
    return default_mpp, "default", "no µm/px in the file, no objective power, and too few nuclei to measure"


def read_slide_info(path: Path, default_mpp: float = FALLBACK_MPP) -> SlideInfo:
    """What the slide is and its level-0 µm/px; SlideReadError (one line) for a file that cannot be used."""
    path = Path(path)
    if not is_plausible_mpp(default_mpp):
        low, high = PLAUSIBLE_MPP
        raise SlideSettingsError(
            f"segmentation setting default_mpp = {short_repr(default_mpp)}: µm/px must be a number from {low} to {high}"
        )
    with open_slide(path) as slide:
        try:
            dimensions = [tuple(d) for d in slide.level_dimensions]
            downsamples = [float(d) for d in slide.level_downsamples]
            width, height = slide.dimensions
            # The thumbnail's level is at least as coarse as any the µm/px estimate decodes whole.
            thumbnail = max(width, height) / THUMBNAIL_LONG_SIDE
            check_whole_slide_read(path.name, dimensions, level_for_downsample(downsamples, thumbnail), thumbnail)
            mpp, source, detail = slide_mpp(path, slide, default_mpp)
            mask = tissue_mask_downsample(width, height, mpp)
            check_whole_slide_read(path.name, dimensions, level_for_downsample(downsamples, mask), mask)
            return SlideInfo(
                path=str(path),
                vendor=slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
                width=width,
                height=height,
                level_count=slide.level_count,
                level_dimensions=dimensions,
                level_downsamples=downsamples,
                mpp=mpp,
                mpp_source=source,
                objective_power=float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
                file_size_bytes=path.stat().st_size,
                mpp_detail=detail,
            )
        except openslide.OpenSlideError as error:
            raise SlideReadError(
                f"{path.name}: the file is damaged ({first_line(error)}); re-export or re-upload the slide"
            ) from error
