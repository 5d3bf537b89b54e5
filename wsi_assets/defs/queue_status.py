"""queue_status_sensor: shows each queued run's place and what it waits for as run tags in the Runs list
and, whenever they change, in the run's own log; likewise each started run whose GPU step waits for a
slot of the `gpu` pool."""

from datetime import datetime, timedelta, timezone

from dagster import DagsterRunStatus, DefaultSensorStatus, RunsFilter, SensorEvaluationContext, SkipReason, sensor

from wsi_assets.queue.dagster_adapter import gpu_pending_steps, read_queue, remove_run_tags
from wsi_assets.queue.positions import (
    ALL_WAIT_TAGS,
    BRANCH_POSITION_TAG,
    GPU_SLOT,
    POSITION_TAG,
    WAITING_REASONS,
    WAITING_TAG,
    changed_gpu_wait_tags,
    changed_place_tags,
    gpu_wait_message,
    gpu_waits,
    place_message,
    queue_places,
)

# Every dequeue shifts every later position; the runs nearest the front are written first and the
# rest follow at the next ticks, so one tick stays short however long the queue is.
MAX_TAG_WRITES_PER_TICK = 200
LEFT_QUEUE = [s for s in DagsterRunStatus if s not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED)]
# A status change written at the same moment as a removal can put the tags back into the run's
# body (Dagster rewrites the body from what it read); runs that changed lately are looked at again.
RECHECK_CHANGED_WITHIN = timedelta(seconds=60)
GOT_SLOT_MESSAGE = f"no longer waiting for a {GPU_SLOT}"


def refresh_gpu_wait_tags(instance, max_writes: int = MAX_TAG_WRITES_PER_TICK) -> tuple[set[str], int]:
    """Tag started runs whose GPU step waits for a slot, and log each change of place: (their run ids, runs written)."""
    waits = gpu_waits(gpu_pending_steps(instance))
    if not waits:
        return set(), 0
    runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records(RunsFilter(run_ids=[w.run_id for w in waits]))}
    changes = changed_gpu_wait_tags(waits, {run_id: run.tags for run_id, run in runs.items()})
    written = 0
    for wait in waits:
        run = runs.get(wait.run_id)
        if run is None or wait.run_id not in changes or written >= max_writes:
            continue
        written += 1
        stale = [key for key in (POSITION_TAG, BRANCH_POSITION_TAG) if key in run.tags]  # its place in the queue it left
        if stale:
            remove_run_tags(instance, wait.run_id, stale)
        instance.add_run_tags(wait.run_id, changes[wait.run_id])
        instance.report_engine_event(gpu_wait_message(wait), dagster_run=run, step_key=wait.step_key)
    return {w.run_id for w in waits}, written


def refresh_queue_tags(instance, max_writes: int = MAX_TAG_WRITES_PER_TICK) -> tuple[int, int]:
    """Write changed place tags on queued runs (and log the new place) and on runs waiting for a GPU slot,
    and drop them from runs that no longer wait: (written, cleared)."""
    queued, in_progress, limits = read_queue(instance)
    places = {place.run.run_id: place for place in queue_places(queued, in_progress, limits)}
    changes = changed_place_tags(list(places.values()))
    for run_id, tags in list(changes.items())[:max_writes]:
        instance.add_run_tags(run_id, tags)
        # A queued run's page shows its log, not its tags: the place goes there too, once per change.
        place = places[run_id]
        instance.report_engine_event(place_message(place), run_id=run_id, job_name=place.run.job)
    gpu_waiting, gpu_written = refresh_gpu_wait_tags(instance, max_writes)
    # Runs still tagged after they left the queue or got their slot: found by the tag itself, so a restart forgets none.
    tagged = instance.get_run_records(
        RunsFilter(tags={WAITING_TAG: [*WAITING_REASONS, GPU_SLOT]}, statuses=LEFT_QUEUE), limit=max_writes
    )
    since = datetime.now(timezone.utc) - RECHECK_CHANGED_WITHIN
    changed = instance.get_run_records(RunsFilter(statuses=LEFT_QUEUE, updated_after=since), limit=max_writes)
    left = {r.dagster_run.run_id: r.dagster_run for r in tagged} | {
        r.dagster_run.run_id: r.dagster_run for r in changed if any(k in r.dagster_run.tags for k in ALL_WAIT_TAGS)
    }
    for run_id in set(left) - gpu_waiting:
        run = left[run_id]
        remove_run_tags(instance, run_id, ALL_WAIT_TAGS)
        if run.tags.get(WAITING_TAG) == GPU_SLOT and run.status == DagsterRunStatus.STARTED:
            instance.report_engine_event(GOT_SLOT_MESSAGE, dagster_run=run)
    return min(len(changes), max_writes) + gpu_written, len(set(left) - gpu_waiting)


@sensor(minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING)
def queue_status_sensor(context: SensorEvaluationContext):
    """Tags queued runs with wsi/queue_position, wsi/branch_position and wsi/waiting_for, and started
    runs waiting for a GPU slot with wsi/waiting_for and wsi/gpu_slot_position; clears them when the wait ends."""
    written, cleared = refresh_queue_tags(context.instance)
    return SkipReason(f"queue tags: {written} runs updated, {cleared} cleared")
