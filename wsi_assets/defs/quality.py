"""Quality checks on each slide's segmentation, shown beside the asset in the UI.

A check judges the cells its own run found: it reads the run's staged result set (the one
`slide_results` is about to publish), or the published set when the run staged none (checks
launched on their own).
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from wsi_assets.core.images import markdown_image
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.segmentation import cell_segmentation
from wsi_assets.defs.slides import slide_metadata
from wsi_assets.quality.checks import (
    CheckOutcome,
    border_duplicates,
    nuclei_density,
    nuclei_in_tissue,
    resolution_fine_enough,
)
from wsi_assets.slides.stored import load_slide_info, load_tissue_mask


def _result(outcome: CheckOutcome, overlay: bytes | None = None, severity=AssetCheckSeverity.ERROR) -> AssetCheckResult:
    metadata = {"result": outcome.description, **outcome.metadata}
    if overlay is not None:
        metadata["outlines"] = MetadataValue.md(markdown_image(overlay, "nucleus outlines"))
    return AssetCheckResult(passed=outcome.passed, severity=severity, metadata=metadata)


@asset_check(
    asset=cell_segmentation, partitions_def=slides_partitions, description="Nuclei are found, and found where the tissue is."
)
def nuclei_found_in_tissue(context: AssetCheckExecutionContext, user_files: UserFilesResource) -> AssetCheckResult:
    outputs = user_files.run_outputs(SlideKey.parse(context.partition_key), context.run.run_id)
    outcome = nuclei_in_tissue(outputs.cells_parquet, load_tissue_mask(outputs))
    overlay = outputs.qc_overlay.read_bytes() if outputs.qc_overlay.exists() else None
    return _result(outcome, overlay)


@asset_check(
    asset=cell_segmentation,
    partitions_def=slides_partitions,
    description="Nuclei per mm² of tissue lie in a range real H&E tissue has; if not, the µm/px is the first suspect.",
)
def nuclei_density_plausible(context: AssetCheckExecutionContext, user_files: UserFilesResource) -> AssetCheckResult:
    outputs = user_files.run_outputs(SlideKey.parse(context.partition_key), context.run.run_id)
    return _result(
        nuclei_density(outputs.cells_parquet, load_tissue_mask(outputs), load_slide_info(outputs)),
        severity=AssetCheckSeverity.WARN,
    )


@asset_check(
    asset=cell_segmentation, partitions_def=slides_partitions, description="No nucleus is reported twice by neighbouring tiles."
)
def no_duplicate_nuclei_at_tile_borders(context: AssetCheckExecutionContext, user_files: UserFilesResource) -> AssetCheckResult:
    outputs = user_files.run_outputs(SlideKey.parse(context.partition_key), context.run.run_id)
    return _result(border_duplicates(outputs.cells_parquet, load_slide_info(outputs).mpp))


@asset_check(
    asset=slide_metadata,
    partitions_def=slides_partitions,
    description="The slide's µm/px resolves nuclei (≤ 1.5 µm/px), whether stated, read or inferred.",
)
def slide_resolution_fine_enough(context: AssetCheckExecutionContext, user_files: UserFilesResource) -> AssetCheckResult:
    outputs = user_files.run_outputs(SlideKey.parse(context.partition_key), context.run.run_id)
    return _result(resolution_fine_enough(load_slide_info(outputs)))


slide_checks = [
    nuclei_found_in_tissue,
    nuclei_density_plausible,
    no_duplicate_nuclei_at_tile_borders,
    slide_resolution_fine_enough,
]
