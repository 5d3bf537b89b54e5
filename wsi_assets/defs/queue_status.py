"""queue_status_sensor: shows each queued run's place and what it waits for as run tags in the Runs list."""

from datetime import datetime, timedelta, timezone

from dagster import DagsterRunStatus, DefaultSensorStatus, RunsFilter, SensorEvaluationContext, SkipReason, sensor

from wsi_assets.queue.dagster_adapter import read_queue, remove_run_tags
from wsi_assets.queue.positions import PLACE_TAGS, WAITING_REASONS, WAITING_TAG, changed_place_tags, queue_places

# Every dequeue shifts every later position; the runs nearest the front are written first and the
# rest follow at the next ticks, so one tick stays short however long the queue is.
MAX_TAG_WRITES_PER_TICK = 200
LEFT_QUEUE = [s for s in DagsterRunStatus if s not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED)]
# A status change written at the same moment as a removal can put the tags back into the run's
# body (Dagster rewrites the body from what it read); runs that changed lately are looked at again.
RECHECK_CHANGED_WITHIN = timedelta(seconds=60)


def refresh_queue_tags(instance, max_writes: int = MAX_TAG_WRITES_PER_TICK) -> tuple[int, int]:
    """Write changed place tags on queued runs and drop them from runs that left the queue: (written, cleared)."""
    queued, in_progress, limits = read_queue(instance)
    changes = changed_place_tags(queue_places(queued, in_progress, limits))
    for run_id, tags in list(changes.items())[:max_writes]:
        instance.add_run_tags(run_id, tags)
    # Runs still tagged after they left the queue: found by the tag itself, so a restart forgets none.
    tagged = instance.get_run_records(RunsFilter(tags={WAITING_TAG: list(WAITING_REASONS)}, statuses=LEFT_QUEUE), limit=max_writes)
    since = datetime.now(timezone.utc) - RECHECK_CHANGED_WITHIN
    changed = instance.get_run_records(RunsFilter(statuses=LEFT_QUEUE, updated_after=since), limit=max_writes)
    left = {r.dagster_run.run_id for r in tagged} | {
        r.dagster_run.run_id for r in changed if any(k in r.dagster_run.tags for k in PLACE_TAGS)
    }
    for run_id in left:
        remove_run_tags(instance, run_id, PLACE_TAGS)
    return min(len(changes), max_writes), len(left)


@sensor(minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING)
def queue_status_sensor(context: SensorEvaluationContext):
    """Tags queued runs with wsi/queue_position, wsi/branch_position and wsi/waiting_for; clears them when a run starts."""
    written, cleared = refresh_queue_tags(context.instance)
    return SkipReason(f"queue tags: {written} runs updated, {cleared} cleared")
