"""Batches of small images: `batch_sensor`, the `process_batch` job and its three assets per batch.

One `batches` partition per folder <user>/inputs/<branch>/<batch>/ and one run per change of it;
the run segments only new or changed images (wsi_assets.batches.manifest) and publishes the
batch's whole result set under <user>/outputs/<branch>/<batch>/ at the end.
"""

import json

from dagster import (
    AssetExecutionContext,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from wsi_assets.results.served_outputs import output_link
from wsi_assets.batches.cells import CELLS_FILE, segment_batch_images
from wsi_assets.batches.manifest import (
    MANIFEST_FILE,
    UNCHANGED,
    build_manifest,
    load_manifest,
    without_changed,
)
from wsi_assets.batches.result_set import previous_manifest, publish_batch_set
from wsi_assets.batches.scan import BatchCursor, scan_batches
from wsi_assets.batches.status import REJECTED_FILE, rejected_json
from wsi_assets.batches.thumbnails import thumbnail_grid
from wsi_assets.cells.cell_classifier import classifier_for
from wsi_assets.batches.exports import BATCH_EXPORTS, write_batch_exports
from wsi_assets.batches.exports.summary import BATCH_FILE as SUMMARY_FILE
from wsi_assets.core.atomic import atomic_output, write_bytes_atomic, write_text_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.confinement import confined
from wsi_assets.core.images import markdown_image
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.progress import ProgressReporter
from wsi_assets.core.user_files import branch_inputs_dir, branch_outputs_dir
from wsi_assets.defs.asset_factories import key_to_stage, partition_asset
from wsi_assets.defs.executors import slide_executor
from wsi_assets.defs.metadata_tables import metadata_table
from wsi_assets.defs.partitions import batches_partitions
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.queue.engine_tags import gpu_step_tags
from wsi_assets.queue.tags import GPU_POOL
from wsi_assets.reports.batch_report import render_batch_report_html
from wsi_assets.reports.report_html import REPORT_FILE
from wsi_assets.results.branch_workbook import write_branch_workbook
from wsi_assets.results.staged_sets import published_set_dir, stage_set

BATCHES_GROUP = "batches"
batch_asset = partition_asset(batches_partitions, BATCHES_GROUP)
THUMBNAILS_FILE = "thumbnails.jpg"
MAX_STATS_PER_TICK = 5000  # files stat-ed per tick, over all batches: a 10,000-image batch takes 2 ticks a pass
MAX_REJECTED_SHOWN = 50


def _batch_folder(root, key: SlideKey):
    return confined(branch_inputs_dir(root, key.user, key.branch) / key.stem, root, key.user)


def _batch_set(context: AssetExecutionContext, root):
    return stage_set(root, key_to_stage(context), context.run.run_id)


@batch_asset(
    kinds={"json"},
    description="The batch's images (size, dimensions, µm/px and its source, new/changed/unchanged) and its rejected files with why.",
)
def batch_manifest(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    root, key = user_files.root_path, SlideKey.parse(context.partition_key)
    settings = branch_settings_for(root, key.user, key.branch)
    manifest = build_manifest(
        _batch_folder(root, key),
        root,
        key,
        previous_manifest(root, key),
        settings.mpp,
        segmentation.default_mpp,
        modality=segmentation.batch_modality(settings.modality),
    )
    folder = _batch_set(context, root)
    write_text_atomic(folder / MANIFEST_FILE, json.dumps(manifest.as_dict(), indent=1))
    write_text_atomic(folder / REJECTED_FILE, rejected_json(manifest.rejected))
    changes = {c: sum(i.change == c for i in manifest.images) for c in ("new", "changed", UNCHANGED)}
    for name, why in manifest.rejected:
        context.log.warning(f"{key}: rejected {name}: {why}")
    context.log.info(f"{key}: {len(manifest.images)} images ({changes}), {len(manifest.rejected)} rejected")
    sources, modalities = {}, {}
    for image in manifest.images:
        sources[image.mpp_source] = sources.get(image.mpp_source, 0) + 1
        modalities[image.modality] = modalities.get(image.modality, 0) + 1
    return MaterializeResult(
        metadata={
            "images": len(manifest.images),
            **{f"{c}_images": n for c, n in changes.items()},
            "rejected": len(manifest.rejected),
            # A table, not markdown: image names are the user's text, shown as typed.
            "rejected_files": metadata_table(
                [{"file": n, "why": w} for n, w in manifest.rejected[:MAX_REJECTED_SHOWN]], ("file", "why")
            ),
            "mpp_sources": MetadataValue.json(sources),
            "mpp_inferred_images": sum(i.mpp_inferred for i in manifest.images),
            "modalities": MetadataValue.json(modalities),  # images per model family (auto decides per image)
            "manifest": MetadataValue.path(str(folder / MANIFEST_FILE)),
        }
    )


@batch_asset(
    deps=[batch_manifest],
    kinds={"pytorch", "parquet"},
    op_tags=gpu_step_tags(),
    pool=GPU_POOL,
    description="Every nucleus of every image of the batch (outline, measurements, class) in one table with an `image` column.",
)
def batch_cells(
    context: AssetExecutionContext, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    root, key = user_files.root_path, SlideKey.parse(context.partition_key)
    folder = _batch_set(context, root)
    manifest = load_manifest(folder / MANIFEST_FILE)
    if manifest is None:
        raise FileNotFoundError(f"{key}: this run has no batch manifest: materialize batch_manifest first (run process_batch)")
    published = published_set_dir(root, key)
    inputs = _batch_folder(root, key)
    context.log.info(f"{key}: segmenting {len(manifest.to_segment)} new or changed images of {len(manifest.images)}")
    segmenter = segmentation.segmenter()
    with atomic_output(folder / CELLS_FILE) as temporary:
        segmented = segment_batch_images(
            manifest,
            inputs,
            temporary,
            segmenter,
            classifier_for(getattr(segmenter, "embedding", None)),
            previous_cells=(published / CELLS_FILE) if published else None,
            progress=ProgressReporter(lambda line: context.log.info(f"{key}: {line}"), stage="batch segmentation"),
            fluorescence_model=segmentation.fluorescence_model(),
        )
    if segmented.changed:  # the manifest must describe the bytes segmented: images that changed leave it, with why
        manifest = without_changed(manifest, segmented.changed)
        write_text_atomic(folder / MANIFEST_FILE, json.dumps(manifest.as_dict(), indent=1))
        write_text_atomic(folder / REJECTED_FILE, rejected_json(manifest.rejected))
        for name, why in segmented.changed:
            context.log.warning(f"{key}: left out {name}: {why}")
    counts = segmented.counts
    grid = thumbnail_grid(manifest, inputs, folder / CELLS_FILE)
    write_bytes_atomic(folder / THUMBNAILS_FILE, grid)
    return MaterializeResult(
        metadata={
            "images": len(counts),
            "segmented_images": len(manifest.to_segment),
            "changed_during_run": len(segmented.changed),
            "cells": sum(counts.values()),
            "thumbnails": MetadataValue.md(markdown_image(grid, f"{key}: first images with their nuclei")),
        }
    )


@batch_asset(
    deps=[batch_cells],
    kinds={"json", "excel"},
    description="COCO, YOLO-seg, an Excel workbook (one row per image) and summary.json for the batch; publishes the batch's result set.",
)
def batch_exports(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
    root, key = user_files.root_path, SlideKey.parse(context.partition_key)
    folder = _batch_set(context, root)
    manifest = load_manifest(folder / MANIFEST_FILE)
    if manifest is None or not (folder / CELLS_FILE).exists():
        raise FileNotFoundError(f"{key}: this run has no batch cells: run process_batch")
    written = write_batch_exports(folder / CELLS_FILE, manifest, folder, images_dir=_batch_folder(root, key))
    # the totals summary.json now holds: reading them back spares a third pass over the cell table
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    write_text_atomic(folder / REPORT_FILE, render_batch_report_html(str(key), summary, (folder / THUMBNAILS_FILE).read_bytes()))
    published = publish_batch_set(
        root, key, context.run.run_id, (MANIFEST_FILE, REJECTED_FILE, CELLS_FILE, THUMBNAILS_FILE, *BATCH_EXPORTS)
    )
    context.log.info(f"{key}: published {summary['images']} images, {summary['cells']} cells at {published} ({written})")
    # The branch's summary.xlsx has a sheet of batches: rebuilt now, as a slide's publish does.
    write_branch_workbook(branch_outputs_dir(root, key.user, key.branch))
    return MaterializeResult(
        metadata={
            "images": summary["images"],
            "cells": summary["cells"],
            "class_counts": MetadataValue.json(summary["class_counts"]),
            "written": MetadataValue.json(written),  # entries each export wrote, by format
            "published": MetadataValue.path(str(published)),
            "report": MetadataValue.url(
                output_link(user_files.root_path, published / REPORT_FILE)
            ),  # the grid and per-image counts, in a browser
        }
    )


batch_assets = [batch_manifest, batch_cells, batch_exports]

process_batch = define_asset_job(
    name="process_batch",
    selection=[batch_manifest, batch_cells, batch_exports],
    executor_def=slide_executor(),
    description="Everything for one batch of small images: manifest, cells of new or changed images, exports, published together.",
)


@sensor(
    jobs=[process_batch],
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches user_files/<user>/inputs/<branch>/<batch>/ folders; one process_batch run once a batch changed and then held still.",
)
def batch_sensor(context: SensorEvaluationContext, user_files: UserFilesResource) -> SensorResult:
    scan = scan_batches(user_files.root_path, BatchCursor.deserialize(context.cursor), MAX_STATS_PER_TICK)
    for folder, why in scan.refused:
        context.log.warning(f"skipped {folder}: {why}")
    keys = [f.key.partition_key for f in scan.folders]
    new_keys = [k for k in keys if not context.instance.has_dynamic_partition(batches_partitions.name, k)]
    runs = [
        RunRequest(
            run_key=f"{folder.key.partition_key}:{fingerprint}",
            job_name=process_batch.name,
            partition_key=folder.key.partition_key,
        )
        for folder, fingerprint in scan.requests
    ]
    for folder, fingerprint in scan.requests:
        context.log.info(f"requesting process_batch for {folder.key} ({fingerprint})")
    waiting = f"; {scan.unfinished} is looked at further next tick ({scan.stats} files a tick)" if scan.unfinished else ""
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[batches_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=scan.cursor.serialize(),
        skip_reason=None if runs else SkipReason(f"no batch changed and held still{waiting}"),
    )
