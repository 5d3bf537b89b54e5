"""Per-slide assets before segmentation: what the slide is (metadata, thumbnail), and where its tissue is.

Each asset writes its own files into its run's result set (published at
<user>/outputs/<branch>/<slide>/ by `slide_results` when the run succeeds) and returns metadata.
"""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from wsi_assets.core.atomic import write_bytes_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.images import markdown_image, small_jpeg
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import partition_asset
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.defs.results import run_set
from wsi_assets.finetuning.branch_files import check_branch_files
from wsi_assets.quality.overlays import tissue_overlay
from wsi_assets.results.slide_identity import (
    ensure_unchanged,
    load_identity,
    save_identity,
    slide_identity,
)
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import (
    open_slide,
    read_whole_slide_at_downsample,
)
from wsi_assets.slides.stored import load_slide_info, save_slide_info, save_tissue_mask
from wsi_assets.slides.tissue import detect_tissue, tissue_mask_downsample

THUMBNAIL_MAX_SIDE = 512
SLIDES_GROUP = "slides"
slide_asset = partition_asset(slides_partitions, SLIDES_GROUP)


@slide_asset(
    kinds={"openslide", "image"},
    description="What the slide is: size, pyramid levels, µm/px (and whether it was inferred), objective, vendor, thumbnail.",
)
def slide_metadata(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    # The run's first step: branch.yaml and the files it names fail here, not after segmentation.
    check_branch_files(
        user_files.root_path, key.user, key.branch, branch_settings_for(user_files.root_path, key.user, key.branch)
    )
    path = user_files.slide_file(key)
    identity = slide_identity(path)
    info = read_slide_info(path, segmentation.default_mpp)
    if info.mpp_inferred:
        context.log.warning(f"{path.name} has no µm/px metadata: using {info.mpp:.4f} µm/px from the {info.mpp_source}")
    with open_slide(path) as slide:
        thumbnail = read_whole_slide_at_downsample(slide, max(info.width, info.height) / THUMBNAIL_MAX_SIDE)
    ensure_unchanged(identity, path, user_files.root_path)
    outputs = run_set(context, user_files, "slide")
    jpeg = small_jpeg(thumbnail, THUMBNAIL_MAX_SIDE)
    write_bytes_atomic(outputs.thumbnail, jpeg)
    save_slide_info(outputs, info)
    save_identity(outputs, identity)
    context.log.info(f"{key}: {info.width}x{info.height} px, {info.level_count} levels, {info.mpp:.4f} µm/px ({info.mpp_source})")
    return MaterializeResult(
        metadata={
            "slide_file": MetadataValue.path(str(path)),
            "width_px": info.width,
            "height_px": info.height,
            "levels": info.level_count,
            "level_downsamples": MetadataValue.json(info.level_downsamples),
            "mpp": info.mpp,
            "mpp_source": info.mpp_source,
            "mpp_inferred": info.mpp_inferred,
            "objective_power": info.objective_power if info.objective_power is not None else "unknown",
            "vendor": info.vendor,
            "file_size_mb": round(info.file_size_bytes / 1e6, 2),
            "area_mm2": round(info.area_mm2, 3),
            "thumbnail": MetadataValue.md(markdown_image(jpeg, f"{key} thumbnail")),
        }
    )


@slide_asset(
    deps=[slide_metadata],
    kinds={"numpy", "image"},
    description="Where the tissue is: a low-resolution mask, its fraction of the slide and area in mm², shown over the thumbnail.",
)
def tissue_mask(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    outputs = run_set(context, user_files, "tissue")
    info = load_slide_info(outputs)
    downsample = tissue_mask_downsample(info.width, info.height, info.mpp)
    path, identity = user_files.slide_file(key), load_identity(outputs)
    ensure_unchanged(identity, path, user_files.root_path)
    with open_slide(path) as slide:
        low_res = read_whole_slide_at_downsample(slide, downsample)
    ensure_unchanged(identity, path, user_files.root_path)
    tissue = detect_tissue(low_res, downsample, info.mpp)
    save_tissue_mask(outputs, tissue)
    overlay = small_jpeg(tissue_overlay(low_res, tissue.mask), THUMBNAIL_MAX_SIDE)
    write_bytes_atomic(outputs.tissue_overlay, overlay)
    context.log.info(f"{key}: tissue {tissue.fraction:.1%} of the slide, {tissue.area_mm2:.2f} mm²")
    if tissue.area_mm2 == 0:
        context.log.warning(f"{key}: no tissue found; segmentation will have nothing to do")
    return MaterializeResult(
        metadata={
            "tissue_fraction": round(tissue.fraction, 4),
            "tissue_area_mm2": round(tissue.area_mm2, 4),
            "mask_size_px": MetadataValue.json(list(tissue.mask.shape[::-1])),
            "mask_um_per_px": round(downsample * info.mpp, 3),
            "overlay": MetadataValue.md(markdown_image(overlay, f"{key} tissue mask")),
        }
    )


slide_assets = [slide_metadata, tissue_mask]
