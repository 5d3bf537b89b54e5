"""upload_sensor: turns stable uploads into `slides` partitions and process_slide runs."""


from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from wsi_assets.defs.jobs import process_slide
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.uploads.scan import ScanCursor, scan_uploads

MAX_FILES_PER_TICK = 500
MAX_REASONS_SHOWN = 20


def _summary(result) -> str:
    lines = [f"skipped {rel}: {why}" for rel, why in result.skipped]
    lines += [f"waiting {rel}: {why}" for rel, why in result.waiting]
    if result.deferred:
        lines.append(f"{result.deferred} files left for the next tick (at most {MAX_FILES_PER_TICK} a tick)")
    shown = lines[:MAX_REASONS_SHOWN]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more (see the sensor log)")
    return "\n".join(shown) or "no new or changed uploads"


@sensor(
    job=process_slide,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches user_files/<user>/inputs/<branch>/ and processes each new or changed slide once it stops changing.",
)
def upload_sensor(context: SensorEvaluationContext, user_files: UserFilesResource) -> SensorResult:
    result = scan_uploads(user_files.root_path, ScanCursor.deserialize(context.cursor), MAX_FILES_PER_TICK)
    for rel, why in result.skipped:
        context.log.warning(f"skipped {rel}: {why}")
    for rel, why in result.waiting:
        context.log.info(f"waiting {rel}: {why}")
    new_keys = sorted({r.key.partition_key for r in result.requests})
    new_keys = [k for k in new_keys if not context.instance.has_dynamic_partition(slides_partitions.name, k)]
    run_requests = [
        RunRequest(run_key=r.run_key, partition_key=r.key.partition_key, tags={"wsi/upload": str(r.path.name)})
        for r in result.requests
    ]
    for request in result.requests:
        context.log.info(f"requesting process_slide for {request.key} ({request.path})")
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[slides_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=result.cursor.serialize(),
        skip_reason=None if run_requests else SkipReason(_summary(result)),
    )
