"""The per-slide segmentation asset: every nucleus in the tissue, streamed to segmentation/cells.parquet."""

import json

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from wsi_assets.cells.measurements import NucleusMeasurer
from wsi_assets.cells.nucleus_typer import CNN_METHODS, typing_measurer
from wsi_assets.cells.stain_vectors import slide_stain_vectors
from wsi_assets.core.atomic import atomic_output, write_bytes_atomic, write_text_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.images import markdown_image
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import partition_asset
from wsi_assets.defs.errors import TRANSIENT_RETRY
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.defs.results import published_location, run_set
from wsi_assets.defs.slides import tissue_mask
from wsi_assets.finetuning.branch_model import resolve_branch_model
from wsi_assets.quality.overlays import qc_overlay
from wsi_assets.queue.dagster_adapter import gpu_slot
from wsi_assets.queue.engine_tags import gpu_step_tags
from wsi_assets.queue.tags import GPU_POOL
from wsi_assets.results.slide_identity import ensure_unchanged, load_identity
from wsi_assets.core.progress import ProgressReporter
from wsi_assets.segmentation.slide import Measurer, segment_slide
from wsi_assets.slides.stored import load_slide_info, load_tissue_mask

SEGMENTATION_GROUP = "segmentation"
segmentation_asset = partition_asset(slides_partitions, SEGMENTATION_GROUP)


@segmentation_asset(
    deps=[tissue_mask],
    kinds={"pytorch", "parquet"},
    pool=GPU_POOL,
    op_tags=gpu_step_tags(),
    retry_policy=TRANSIENT_RETRY,
    description="Every nucleus in the tissue, in level-0 pixel coordinates (segmentation/cells.parquet).",
)
def cell_segmentation(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    outputs = run_set(context, user_files, "cells")
    info = load_slide_info(outputs)
    tissue = load_tissue_mask(outputs)
    slide_file, identity = user_files.slide_file(key), load_identity(outputs)
    ensure_unchanged(identity, slide_file, user_files.root_path)
    settings = branch_settings_for(user_files.root_path, key.user, key.branch)
    # branch.yaml's `model:` (a fine-tuned model finetune_from_reviews registered) wins over the run's resource.
    segmenter = segmentation.segmenter(resolve_branch_model(user_files.root_path, key.user, key.branch, settings.model))
    context.log.info(
        f"{key}: segmenting with {segmenter.name} v{segmenter.version} on {segmenter.device} at {segmenter.mpp} µm/px"
    )
    stains = slide_stain_vectors(outputs.thumbnail, tissue.mask if tissue is not None else None)
    context.log.info(f"{key}: stain vectors {stains.source}: haematoxylin {stains.haematoxylin}, eosin {stains.eosin}")
    measurements = NucleusMeasurer(segmenter.mpp, stains)
    measurer: Measurer = measurements
    if settings.classifier in CNN_METHODS:
        # The branch types its nuclei with the network: it sees each tile's pixels here, so classification needs none.
        typing = typing_measurer(measurements)
        context.log.info(
            f"{key}: classifier {settings.classifier}: {typing.typer.model.name} types each nucleus while segmenting"
        )
        measurer = typing
    provenance = {
        "slide": key.partition_key,
        "mpp": info.mpp,
        "segmenter": segmenter.name,
        "segmenter_version": segmenter.version,
    }
    outputs.cells_parquet.parent.mkdir(parents=True, exist_ok=True)
    with gpu_slot(context.instance, context.log.info), atomic_output(outputs.cells_parquet) as temporary:
        summary = segment_slide(
            slide_file,
            info.mpp,
            tissue,
            segmenter,
            temporary,
            segmentation.tiling(),
            on_progress=ProgressReporter(context.log.info),
            store_metadata=provenance,
            measurer=measurer,
        )
    # Nuclei read from a file replaced mid-run could lie outside the slide's recorded size.
    ensure_unchanged(identity, slide_file, user_files.root_path)
    write_text_atomic(
        outputs.segmentation_json,
        json.dumps(
            {**provenance, **summary.__dict__, "mm2_per_s": summary.mm2_per_s, "stain_vectors": stains.as_dict()}, indent=2
        ),
    )
    overlay = qc_overlay(slide_file, outputs.cells_parquet, info)
    write_bytes_atomic(outputs.qc_overlay, overlay)
    context.log.info(
        f"{key}: {summary.cells} nuclei in {summary.tiles} tiles, {summary.seconds:.1f} s ({summary.mm2_per_s:.3f} mm²/s)"
    )
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
            "stain_vectors": MetadataValue.json(stains.as_dict()),
            "cells_file": MetadataValue.path(str(published_location(user_files, key, outputs, outputs.cells_parquet))),
            "outlines": MetadataValue.md(markdown_image(overlay, f"{key} nucleus outlines")),
        }
    )


segmentation_assets = [cell_segmentation]
