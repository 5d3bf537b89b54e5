"""The slide's published result set: the run's staged outputs switched into place in one step.

Every per-slide asset writes into its run's own set (wsi_assets.results.result_sets);
`slide_results` runs last in each slide job, and is skipped when any step before it fails, so
a failed run never shows a mix of old and new files.
"""

import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
)

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import branch_outputs_dir, slide_output_dir
from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.defs.asset_factories import key_to_stage, partition_asset
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.reports.report_html import REPORT_FILE, write_report_html
from wsi_assets.reports.slide_report import slide_report
from wsi_assets.results.served_outputs import output_link
from wsi_assets.results.branch_workbook import write_branch_workbook
from wsi_assets.results.dropped_cells import dropped_cells_warning
from wsi_assets.results.staged_sets import published_set_dir

RESULTS_GROUP = "results"
result_asset = partition_asset(slides_partitions, RESULTS_GROUP)
RESULTS_ASSET = "slide_results"
# By key rather than by definition: the per-slide asset modules import this one for `run_set`.
PER_SLIDE_ASSETS = (
    "slide_metadata",
    "tissue_mask",
    "cell_segmentation",
    "cell_classification",
    *(export.asset_name for export in EXPORT_FORMATS),
)


def run_set(context: AssetExecutionContext, user_files: UserFilesResource, stage: str) -> SlideOutputs:
    """The run's own result set, where a per-slide asset of `stage` writes."""
    selection = context.run.asset_selection
    # None or empty: the whole job, and every slide job ends with slide_results.
    if selection and AssetKey(RESULTS_ASSET) not in selection:
        # Without the publishing step the run's files would be staged and then swept, unseen.
        raise Failure(
            description=f"{context.asset_key.to_user_string()} was selected without {RESULTS_ASSET}, so its results would "
            f"never be published: add {RESULTS_ASSET} to the selection, or launch process_slide, classify_cells, export_cells or tissue_mask_only",
            allow_retries=False,
        )
    key = key_to_stage(context)
    return user_files.staged_outputs(key, context.run.run_id, stage, context.run.parent_run_id)


def published_location(user_files: UserFilesResource, key: SlideKey, outputs: SlideOutputs, staged: Path) -> Path:
    """Where a file staged in the run's set is opened once the run publishes:
    <user>/outputs/<branch>/<slide>/..., not the run's own folder under .sets/, which is swept later."""
    return slide_output_dir(user_files.root_path, key) / Path(staged).relative_to(outputs.folder)


def _job_shown(job_name: str) -> str:
    # Assets materialised from the asset graph run in Dagster's implicit job, whose name means nothing to a user.
    return "this run" if job_name.startswith("__") else job_name


@result_asset(
    deps=[AssetKey(name) for name in PER_SLIDE_ASSETS],
    kinds={"folder"},
    description="The slide's published results (<user>/outputs/<branch>/<slide>/): switched to this run's whole set in one step; report.html in it shows the set in a browser.",
)
def slide_results(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    # A whole set holds the exports the branch asks for; an export asset writes no other.
    settings = branch_settings_for(user_files.root_path, key.user, key.branch)
    export_files = tuple(export.file_name for export in EXPORT_FORMATS if settings.wants(export.setting_name))
    warnings: list[str] = []

    def before_switch(outputs: SlideOutputs, stage: str) -> None:
        # While the previous set is still published: what it held is what this run drops.
        warning = dropped_cells_warning(
            published_set_dir(user_files.root_path, key), stage, str(key), _job_shown(context.job_name)
        )
        warnings.extend([warning] if warning else [])
        stats = context.instance.get_run_stats(context.run.run_id)
        run_seconds = time.time() - stats.start_time if stats.start_time else None
        report = slide_report(outputs, stage, str(key), user_files.slide_file(key).name, context.run.run_id, run_seconds)
        write_report_html(outputs, report)

    published = user_files.publish(key, context.run.run_id, export_files, before_switch)
    if published is None:
        context.log.info(f"{key}: this run staged no results; the published set is unchanged")
        return MaterializeResult(metadata={"published": False})
    context.log.info(f"{key}: published {published.files} files (through {published.stage}) at {published.folder}")
    for warning in warnings:
        context.log.warning(warning)
    if published.swept:
        context.log.info(f"{key}: swept {len(published.swept)} stale sets and temporaries: {', '.join(published.swept)}")
    workbook, rows = write_branch_workbook(branch_outputs_dir(user_files.root_path, key.user, key.branch))
    context.log.info(f"{key}: rewrote {workbook} ({rows} slides)")
    return MaterializeResult(
        metadata={
            "published": True,
            "folder": MetadataValue.path(str(published.folder)),
            # http when run.sh serves the outputs (WSI_OUTPUTS_URL); browsers do not open file:// links from the UI's page.
            "report": MetadataValue.url(output_link(user_files.root_path, published.folder / REPORT_FILE)),
            "report_file": MetadataValue.path(str(published.folder / REPORT_FILE)),
            "result_set": context.run.run_id,
            "through_stage": published.stage,
            "files": published.files,
            "swept": len(published.swept),
            "exports": MetadataValue.json(list(settings.export_names())),
            "branch_summary": MetadataValue.path(str(workbook)),
            "branch_summary_slides": rows,
        }
    )


result_assets = [slide_results]
