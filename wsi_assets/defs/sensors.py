"""upload_sensor: turns stable uploads into `slides` / `stacks` partitions and process_slide / process_stack runs, and keeps upload_status current (inputs/ and reviews/)."""

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from wsi_assets.batches.status import batch_statuses
from wsi_assets.defs.jobs import process_slide, process_stack
from wsi_assets.defs.partitions import slides_partitions, stacks_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.upload_status import (
    previous_status,
    status_materialization,
    users_partitions,
)
from wsi_assets.reviews.review_status import review_statuses
from wsi_assets.uploads.kinds import STACK
from wsi_assets.uploads.scan import ScanCursor, ScanResult, scan_uploads
from wsi_assets.uploads.status import digest, draft_statuses, settle, write_status_file

MAX_FILES_PER_TICK = 500
# Well under Dagster's 60 s sensor timeout: no file starts being examined after this (each one is bounded).
MAX_SECONDS_PER_TICK = 10.0
MAX_REASONS_SHOWN = 20
MAX_REASONS_LOGGED = 50


def log_reasons(context: SensorEvaluationContext, skipped: list[tuple[str, str]], waiting: list[tuple[str, str]]) -> None:
    """The first reasons in the tick's log: each line is a write to the instance, and the upload status lists them all."""
    lines = [(context.log.warning, f"skipped {rel}: {why}") for rel, why in skipped]
    lines += [(context.log.info, f"waiting {rel}: {why}") for rel, why in waiting]
    for log, line in lines[:MAX_REASONS_LOGGED]:
        log(line)
    if len(lines) > MAX_REASONS_LOGGED:
        context.log.info(f"... and {len(lines) - MAX_REASONS_LOGGED} more: see upload_status")


def _summary(result) -> str:
    lines = [f"skipped {rel}: {why}" for rel, why in result.skipped]
    lines += [f"waiting {rel}: {why}" for rel, why in result.waiting]
    if result.deferred:
        lines.append(
            f"{result.deferred} files left for the next tick (at most {MAX_FILES_PER_TICK} files and {MAX_SECONDS_PER_TICK:.0f} s a tick)"
        )
    shown = lines[:MAX_REASONS_SHOWN]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more (see the sensor log and upload_status)")
    return "\n".join(shown) or "no new or changed uploads"


def _status_events(context: SensorEvaluationContext, root, result: ScanResult, before: ScanCursor):
    """Materializations of upload_status for the users whose status changed, and their new partitions."""
    events, digests = [], {}
    drafts = draft_statuses(result, before)
    # Review files and the batches' rejected files share the user's status, each with why.
    for user, rows in review_statuses(root, result.entries).items():
        drafts.setdefault(user, []).extend(rows)
    for user, rows in batch_statuses(root).items():  # batch folders, and the files their last runs did not use
        drafts.setdefault(user, []).extend(rows)
    for user, draft in sorted(drafts.items()):
        digests[user] = digest(draft)
        if before.users.get(user) == digests[user]:
            continue  # same look as last time: nothing to read back or record
        previous = previous_status(context.instance, user)
        settled = settle(draft, previous)
        if {s.path: s for s in settled} == previous:
            continue
        status_file = write_status_file(root, user, settled, result.started_ns)
        events.append(status_materialization(user, settled, status_file))
    result.cursor.users = digests
    new_users = [e.partition for e in events if not context.instance.has_dynamic_partition(users_partitions.name, e.partition)]
    return events, new_users


@sensor(
    jobs=[process_slide, process_stack],
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches user_files/<user>/inputs/<branch>/ and processes each new or changed slide or stack once it stops changing.",
)
def upload_sensor(context: SensorEvaluationContext, user_files: UserFilesResource) -> SensorResult:
    # A missing or unreadable root raises UploadRootUnavailable: the tick fails, shown in red, until it is fixed.
    before = ScanCursor.deserialize(context.cursor)
    root = user_files.root_path
    result = scan_uploads(root, before, MAX_FILES_PER_TICK, max_seconds=MAX_SECONDS_PER_TICK)
    log_reasons(context, result.skipped, result.waiting)
    status_events, new_users = _status_events(context, root, result, before)
    run_requests, partition_requests = [], []
    for partitions, job in ((slides_partitions, process_slide), (stacks_partitions, process_stack)):
        requests = [r for r in result.requests if (r.kind == STACK) == (job is process_stack)]
        new_keys = sorted({r.key.partition_key for r in requests})
        new_keys = [k for k in new_keys if not context.instance.has_dynamic_partition(partitions.name, k)]
        if new_keys:
            partition_requests.append(partitions.build_add_request(new_keys))
        for r in requests:
            context.log.info(f"requesting {job.name} for {r.key} ({r.relpath})")
            run_requests.append(
                RunRequest(
                    run_key=r.run_key, job_name=job.name, partition_key=r.key.partition_key, tags={"wsi/upload": str(r.path.name)}
                )
            )
    if new_users:
        partition_requests.append(users_partitions.build_add_request(new_users))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=partition_requests,
        asset_events=status_events,
        cursor=result.cursor.serialize(),
        skip_reason=None if run_requests else SkipReason(_summary(result)),
    )
