"""Per-slide assets: metadata and thumbnail → tissue mask → cell segmentation → exports.

Each asset writes its own files under <user>/outputs/<branch>/<slide>/ and returns metadata.
"""


import functools
import json
import time

import numpy as np
from dagster import AssetExecutionContext, Backoff, Failure, MaterializeResult, MetadataValue, RetryPolicy, asset

from wsi_assets.version import __version__
from wsi_assets.exports import write_cells_csv, write_cells_zarr_zip
from wsi_assets.gpu_slots import gpu_slot
from wsi_assets.partitions import slides_partitions
from wsi_assets.quality import draw_outlines, overlay_regions, region_polygons
from wsi_assets.resources import SegmentationResource, UserFilesResource
from wsi_assets.slide_keys import InvalidSlideKey, SlideKey
from wsi_assets.slide_outputs import MissingUpstreamOutput
from wsi_assets.slide_reader import SlideReadError
from wsi_assets.slide_reader import open_slide, read_region_at_downsample, read_slide_info, read_whole_slide_at_downsample
from wsi_assets.slide_segmentation import ProgressReporter, segment_slide
from wsi_assets.tissue import detect_tissue, tissue_mask_downsample
from wsi_assets.ui_images import markdown_image, small_jpeg, tissue_overlay
from wsi_assets.user_files import atomic_output, write_bytes_atomic, write_text_atomic

THUMBNAIL_MAX_SIDE = 512
# Transient trouble (a GPU busy elsewhere, a network share hiccup) is retried inside the run:
# a whole-run retry would re-enter at the back of the branch's queue.
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)
OVERLAY_REGION_UM = 128.0  # side of each full-resolution QC region


# Problems with the user's input or an order of steps they can fix: shown as one line, not a traceback.
USER_FACING_ERRORS = (SlideReadError, InvalidSlideKey, MissingUpstreamOutput, FileNotFoundError, FileExistsError)


def fails_clearly(fn):
    """Turn a user-fixable error into a Dagster Failure whose description is the error's one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_FACING_ERRORS as error:
            raise Failure(description=str(error).splitlines()[0], allow_retries=False) from None

    return wrapper


def _slide_key(context: AssetExecutionContext) -> SlideKey:
    return SlideKey.parse(context.partition_key)


@asset(
    partitions_def=slides_partitions,
    group_name="slides",
    kinds={"openslide", "image"},
    description="What the slide is: size, pyramid levels, µm/px (and whether it was inferred), objective, vendor, thumbnail.",
)
@fails_clearly
def slide_metadata(context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource) -> MaterializeResult:
    key = _slide_key(context)
    path = user_files.slide_file(key)
    info = read_slide_info(path, segmentation.default_mpp)
    if info.mpp_inferred:
        context.log.warning(f"{path.name} has no µm/px metadata: using {info.mpp:.4f} µm/px from the {info.mpp_source}")
    outputs = user_files.outputs(key)
    with open_slide(path) as slide:
        thumbnail = read_whole_slide_at_downsample(slide, max(info.width, info.height) / THUMBNAIL_MAX_SIDE)
    jpeg = small_jpeg(thumbnail, THUMBNAIL_MAX_SIDE)
    write_bytes_atomic(outputs.thumbnail, jpeg)
    outputs.write_slide_info(info)
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


@asset(
    partitions_def=slides_partitions,
    group_name="slides",
    deps=[slide_metadata],
    kinds={"numpy", "image"},
    description="Where the tissue is: a low-resolution mask, its fraction of the slide and area in mm², shown over the thumbnail.",
)
@fails_clearly
def tissue_mask(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = _slide_key(context)
    outputs = user_files.outputs(key)
    info = outputs.read_slide_info()
    downsample = tissue_mask_downsample(info.width, info.height, info.mpp)
    with open_slide(user_files.slide_file(key)) as slide:
        low_res = read_whole_slide_at_downsample(slide, downsample)
    tissue = detect_tissue(low_res, downsample, info.mpp)
    outputs.write_tissue_mask(tissue)
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


@asset(
    partitions_def=slides_partitions,
    group_name="slides",
    deps=[tissue_mask],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    op_tags={"wsi/device": "gpu"},
    retry_policy=TRANSIENT_RETRY,
    description="Every nucleus in the tissue, in level-0 pixel coordinates (segmentation/cells.parquet).",
)
@fails_clearly
def cell_segmentation(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    key = _slide_key(context)
    outputs = user_files.outputs(key)
    info = outputs.read_slide_info()
    tissue = outputs.read_tissue_mask()
    segmenter = segmentation.segmenter()
    context.log.info(f"{key}: segmenting with {segmenter.name} v{segmenter.version} on {segmenter.device} at {segmenter.mpp} µm/px")
    provenance = {"slide": key.partition_key, "mpp": info.mpp, "segmenter": segmenter.name, "segmenter_version": segmenter.version}
    outputs.cells_parquet.parent.mkdir(parents=True, exist_ok=True)
    with gpu_slot(context.instance, context.log.info), atomic_output(outputs.cells_parquet) as temporary:
        summary = segment_slide(
            user_files.slide_file(key),
            info.mpp,
            tissue,
            segmenter,
            temporary,
            segmentation.tiling(),
            on_progress=ProgressReporter(context.log.info),
            store_metadata=provenance,
        )
    write_text_atomic(outputs.segmentation_json, json.dumps({**provenance, **summary.__dict__, "mm2_per_s": summary.mm2_per_s}, indent=2))
    overlay = _qc_overlay(user_files, key, info)
    write_bytes_atomic(outputs.qc_overlay, overlay)
    context.log.info(f"{key}: {summary.cells} nuclei in {summary.tiles} tiles, {summary.seconds:.1f} s ({summary.mm2_per_s:.3f} mm²/s)")
    return MaterializeResult(
        metadata={
            "nuclei": summary.cells,
            "nuclei_per_mm2": round(summary.cells / summary.tissue_mm2, 1) if summary.tissue_mm2 else 0.0,
            "tiles": summary.tiles,
            "tiles_in_grid": summary.tiles_total_grid,
            "seconds": round(summary.seconds, 2),
            "tissue_mm2_per_s": round(summary.mm2_per_s, 4),
            "device": summary.device,
            "segmenter": f"{summary.segmenter} v{summary.segmenter_version}",
            "model_mpp": summary.mpp_model,
            "cells_file": MetadataValue.path(str(outputs.cells_parquet)),
            "outlines": MetadataValue.md(markdown_image(overlay, f"{key} nucleus outlines")),
        }
    )


def _qc_overlay(user_files: UserFilesResource, key: SlideKey, info) -> bytes:
    """Nucleus outlines drawn on a few full-resolution regions, side by side."""
    region_px = int(round(OVERLAY_REGION_UM / info.mpp))
    outputs = user_files.outputs(key)
    panels = []
    with open_slide(user_files.slide_file(key)) as slide:
        for x0, y0 in overlay_regions(outputs.cells_parquet, info.width, info.height, region_px):
            rgb = read_region_at_downsample(slide, x0, y0, region_px, region_px, 1.0)
            polygons = region_polygons(outputs.cells_parquet, x0 - region_px, y0 - region_px, x0 + 2 * region_px, y0 + 2 * region_px)
            panels.append(draw_outlines(rgb, polygons, x0, y0))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    return small_jpeg(strip, max(strip.shape[:2]))


def _export_provenance(user_files: UserFilesResource, key: SlideKey) -> dict:
    outputs = user_files.outputs(key)
    summary = json.loads(outputs.require(outputs.segmentation_json, "cell_segmentation").read_text())
    return {
        "slide": key.partition_key,
        "slide_file": user_files.slide_file(key).name,
        "mpp": summary["mpp"],
        "segmenter": summary["segmenter"],
        "segmenter_version": summary["segmenter_version"],
        "wsi_assets_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@asset(
    partitions_def=slides_partitions,
    group_name="exports",
    deps=[cell_segmentation],
    kinds={"csv"},
    retry_policy=TRANSIENT_RETRY,
    description="cells.csv: one row per nucleus (id, centroid, polygon, area) in level-0 pixels; opens in pandas, Excel, QuPath scripts.",
)
@fails_clearly
def cells_csv(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = _slide_key(context)
    outputs = user_files.outputs(key)
    provenance = _export_provenance(user_files, key)
    rows = write_cells_csv(outputs.require(outputs.cells_parquet, "cell_segmentation"), outputs.cells_csv, provenance["mpp"])
    context.log.info(f"{key}: wrote {rows} rows to {outputs.cells_csv}")
    return MaterializeResult(
        metadata={"rows": rows, "path": MetadataValue.path(str(outputs.cells_csv)), "size_mb": round(outputs.cells_csv.stat().st_size / 1e6, 3)}
    )


@asset(
    partitions_def=slides_partitions,
    group_name="exports",
    deps=[cell_segmentation],
    kinds={"zarr"},
    retry_policy=TRANSIENT_RETRY,
    description="cells.zarr.zip: Zarr v3 zip store of cell ids, centroids and ragged polygons (offsets + vertices), level-0 pixels.",
)
@fails_clearly
def cells_zarr(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = _slide_key(context)
    outputs = user_files.outputs(key)
    provenance = _export_provenance(user_files, key)
    total = write_cells_zarr_zip(outputs.require(outputs.cells_parquet, "cell_segmentation"), outputs.cells_zarr_zip, provenance)
    context.log.info(f"{key}: wrote {total} cells to {outputs.cells_zarr_zip}")
    return MaterializeResult(
        metadata={
            "total_cells": total,
            "path": MetadataValue.path(str(outputs.cells_zarr_zip)),
            "size_mb": round(outputs.cells_zarr_zip.stat().st_size / 1e6, 3),
        }
    )


slide_assets = [slide_metadata, tissue_mask, cell_segmentation, cells_csv, cells_zarr]
