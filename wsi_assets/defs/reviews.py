"""Pathologists' reviews: the review sensor, the per-slide `cell_review`, the per-branch `slide_reviews`, and their jobs.

Each import keeps the file's content as a new version (wsi_assets.reviews.version_store) and logs
it in the user's hash-chained audit log; `restore_review` makes an earlier version current again.
"""

import csv
import functools
import io
import json

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    in_process_executor,
    sensor,
)
from pydantic import Field

from wsi_assets.core.atomic import write_bytes_atomic, write_text_atomic
from wsi_assets.core.confinement import confined, shown_under_root
from wsi_assets.core.images import markdown_image, small_jpeg, encode_jpeg
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import branch_outputs_dir
from wsi_assets.defs.errors import fails_clearly
from wsi_assets.defs.metadata_tables import metadata_table
from wsi_assets.defs.partitions import branches_partitions, slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.results import run_set, slide_results
from wsi_assets.defs.sensors import log_reasons
from wsi_assets.reviews.audit_log import AuditLogTampered
from wsi_assets.reviews.branch_labels import TABLE_COLUMNS, annotator_agreement, slide_table
from wsi_assets.reviews.cell_review import review_slide_cells, write_review_files
from wsi_assets.reviews.overlay import disagreement_overlay
from wsi_assets.reviews.review_files import (
    cell_review_changes,
    find_cell_review,
    find_slide_labels,
    read_slide_metadata_mpp,
    read_version_cells,
    slide_labels_changes,
)
from wsi_assets.reviews.review_geojson import ReviewFileError
from wsi_assets.reviews.import_verdicts import recording_import
from wsi_assets.reviews.scan import scan_reviews
from wsi_assets.reviews.slide_labels import parse_slide_labels
from wsi_assets.reviews.version_store import UnknownReviewVersion, import_review
from wsi_assets.reviews.version_store import restore_review as restore_review_version
from wsi_assets.slides.reader import open_slide

REVIEWS_GROUP = "reviews"
REVIEW_FOLDER = "review"  # inside the slide's result set
RESTORE_JOB = "restore_review"
PREVIEW_ROWS = 50  # rows of slide_reviews.csv shown in the UI; the file holds them all
REVIEW_ERRORS = (ReviewFileError, AuditLogTampered, UnknownReviewVersion)
# Well under Dagster's 60 s sensor timeout; the files left over are looked at next tick.
MAX_REVIEWS_PER_TICK, MAX_SECONDS_PER_TICK = 500, 10.0


def _reviews_fail_clearly(fn):
    """fails_clearly, plus the review errors: a bad file, a tampered log or an unknown version is one line, never retried."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except REVIEW_ERRORS as error:
            raise Failure(description=str(error).splitlines()[0], allow_retries=False) from None

    return fails_clearly(wrapper)


class ReviewConfig(Config):
    restore_version: str = Field(
        default="",
        description="A version (content hash or its first characters) to make current again; empty: import the uploaded file",
    )


def _current(context, root, user, branch, upload, changes, config: ReviewConfig):
    changes = functools.partial(changes, shown=shown_under_root(upload, root))
    if context.run.job_name == RESTORE_JOB and not config.restore_version:
        raise Failure(
            description=f"{RESTORE_JOB} needs the version to restore: set ops.{context.asset_key.to_user_string()}.config.restore_version (see the audit log)",
            allow_retries=False,
        )
    if config.restore_version:
        version = restore_review_version(
            root, user, branch, upload.name, config.restore_version, f"dagster run {context.run.run_id[:8]}", changes
        )
        context.log.info(
            f"restored {upload.name} version {version.short} of {user}/{branch} (audit entry {version.entry['seq']})"
        )
        return version
    with recording_import(root, user, branch, upload, context.run.run_id):  # the upload status shows what this found
        version, new = import_review(root, user, branch, upload, changes)
    context.log.info(
        f"{'imported' if new else 'unchanged:'} {upload.name} version {version.short} (audit entry {version.entry['seq']})"
    )
    return version


@asset(
    partitions_def=slides_partitions,
    group_name=REVIEWS_GROUP,
    kinds={"geojson", "qupath"},
    description="The pathologist's QuPath cells against the model's, inside the reviewed regions: added, deleted, reclassified and reshaped cells, detection and per-class F1, confusion matrix, Cohen's κ, and an overlay.",
)
@_reviews_fail_clearly
def cell_review(context: AssetExecutionContext, config: ReviewConfig, user_files: UserFilesResource) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    root = user_files.root_path
    upload = find_cell_review(root, key)
    version = _current(context, root, key.user, key.branch, upload, cell_review_changes, config)
    reviewer = read_version_cells(version.path, f"{upload.name} (version {version.short})")
    if reviewer.skipped:
        context.log.warning(
            f"{upload.name}: skipped {len(reviewer.skipped)} features without area, used the rest: {'; '.join(reviewer.skipped[:10])}"
        )
    outputs = run_set(context, user_files, "exports")
    cells = outputs.require(outputs.cells_parquet, "cell_segmentation")
    mpp = read_slide_metadata_mpp(outputs.require(outputs.metadata_json, "slide_metadata"))
    result = review_slide_cells(cells, reviewer, mpp)
    folder = outputs.folder / REVIEW_FOLDER
    provenance = {
        "review_file": upload.name,
        "version": version.sha256,
        "audit_seq": version.entry["seq"],
        "run_id": context.run.run_id,
    }
    summary, table = write_review_files(folder, result, provenance)
    slide = open_slide(user_files.slide_file(key))
    try:
        rgb = disagreement_overlay(slide, result, *slide.dimensions)
    finally:
        slide.close()
    write_bytes_atomic(folder / "disagreements.jpg", encode_jpeg(rgb, 90))
    figures = result.figures
    context.log.info(
        f"{key}: detection F1 {figures['detection_f1']}, {figures['added']} added, {figures['deleted']} deleted, {figures['reclassified']} reclassified, {figures['reshaped']} reshaped"
    )
    metadata = {k: v for k, v in figures.items() if isinstance(v, (int, float, str, bool)) and v is not None}
    metadata.update(
        version=version.sha256,
        audit_seq=version.entry["seq"],
        summary=MetadataValue.path(str(summary)),
        disagreements=MetadataValue.path(str(table)),
        overlay=MetadataValue.md(
            markdown_image(small_jpeg(rgb), "disagreements: green added, magenta deleted, yellow reclassified, cyan reshaped")
        ),
    )
    if figures.get("classes_compared"):
        metadata["class_f1"] = MetadataValue.json(figures["class_f1"])
        metadata["confusion_matrix"] = MetadataValue.json(
            {"labels": figures["class_labels"], "rows_model_columns_reviewer": figures["confusion_matrix"]}
        )
    return MaterializeResult(metadata=metadata)


@asset(
    partitions_def=branches_partitions,
    group_name=REVIEWS_GROUP,
    kinds={"csv"},
    description="The branch's slide labels (slides.csv) as one table, with agreement between annotators: weighted κ per pair (adequacy is ordinal), Fleiss' κ for 3+ annotators.",
)
@_reviews_fail_clearly
def slide_reviews(context: AssetExecutionContext, config: ReviewConfig, user_files: UserFilesResource) -> MaterializeResult:
    user, branch = context.partition_key.split("/")
    root = user_files.root_path
    upload = find_slide_labels(root, user, branch)
    version = _current(context, root, user, branch, upload, slide_labels_changes, config)
    labels = parse_slide_labels(version.path.read_bytes(), f"{upload.name} (version {version.short})")
    rows, agreement = slide_table(labels), annotator_agreement(labels)
    folder = confined(branch_outputs_dir(root, user, branch), root, user)
    text = io.StringIO()
    writer = csv.DictWriter(text, TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    table = write_text_atomic(folder / "slide_reviews.csv", text.getvalue())
    write_text_atomic(folder / "slide_reviews.json", json.dumps({"agreement": agreement, "version": version.sha256}, indent=2))
    context.log.info(f"{user}/{branch}: {agreement['slides']} slides labelled by {len(agreement['annotators'])} annotators")
    return MaterializeResult(
        metadata={
            "slides": agreement["slides"],
            "labels": len(rows),
            "annotators": len(agreement["annotators"]),
            "version": version.sha256,
            "audit_seq": version.entry["seq"],
            "table": MetadataValue.path(str(table)),
            "agreement": MetadataValue.json(agreement),
            # A table, not markdown: comments and codes are the annotators' own text, shown as typed.
            "preview": metadata_table(rows[:PREVIEW_ROWS], TABLE_COLUMNS),
        }
    )


review_slide = define_asset_job(
    name="review_slide",
    selection=AssetSelection.assets(cell_review, slide_results),
    executor_def=in_process_executor,
    description="Import the slide's QuPath review and compare it with the model; published with the slide's results.",
)

restore_review = define_asset_job(
    name=RESTORE_JOB,
    selection=AssetSelection.assets(cell_review, slide_results),
    executor_def=in_process_executor,
    description="Make an earlier version of the slide's review current again (ops.cell_review.config.restore_version) and compare it.",
)

review_branch = define_asset_job(
    name="review_branch",
    selection=AssetSelection.assets(slide_reviews),
    executor_def=in_process_executor,
    description="Import the branch's slides.csv and measure agreement between annotators (restore with ops.slide_reviews.config.restore_version).",
)


@sensor(
    jobs=[review_slide, review_branch],
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches user_files/<user>/reviews/<branch>/ and imports each new or changed review once it stops changing.",
)
def review_sensor(context: SensorEvaluationContext, user_files: UserFilesResource) -> SensorResult:
    scan = scan_reviews(user_files.root_path, context.cursor, MAX_REVIEWS_PER_TICK, MAX_SECONDS_PER_TICK)
    runs, branches = [], set()
    for request in scan.requests:
        if request.kind == "cells" and not context.instance.has_dynamic_partition(slides_partitions.name, request.partition_key):
            # Looked at again next tick: the slide may be uploaded after its review.
            scan.cursor["done"].pop(request.relpath, None)
            scan.waiting.append(
                (
                    request.relpath,
                    f"no slide {request.partition_key} yet: upload and process the slide; the review is imported then",
                )
            )
            continue
        # Every reviewed branch is a `branches` partition: slide_reviews and finetune_from_reviews run per branch.
        branches.add(f"{request.user}/{request.branch}")
        job = review_slide.name if request.kind == "cells" else review_branch.name
        runs.append(
            RunRequest(
                run_key=request.run_key, partition_key=request.partition_key, job_name=job, tags={"wsi/review": request.relpath}
            )
        )
    log_reasons(context, scan.skipped, scan.waiting)
    new_branches = sorted(b for b in branches if not context.instance.has_dynamic_partition(branches_partitions.name, b))
    reasons = [f"skipped {r}: {w}" for r, w in scan.skipped] + [f"waiting {r}: {w}" for r, w in scan.waiting]
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[branches_partitions.build_add_request(new_branches)] if new_branches else [],
        cursor=json.dumps(scan.cursor, separators=(",", ":")),
        skip_reason=None if runs else SkipReason("\n".join(reasons[:20]) or "no new or changed reviews"),
    )


review_assets = [cell_review, slide_reviews]
review_jobs = [review_slide, restore_review, review_branch]
