"""The one module that touches Dagster's private APIs: the instance classes named in dagster.yaml
(branch-aware run coordinator, run launcher with worker health checks), the GPU slot guard,
which needs to know the instance's storage, and the webserver's trust in deploy/auth's proxy.

The coordinator and launcher are imported by the webserver, the daemon and the CLI alike, so
every launch path queues the same way. A Dagster upgrade that moves these APIs breaks here only.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, DagsterRun
from dagster._core.storage.event_log.sqlite import ConsolidatedSqliteEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage
from dagster._core.workspace.context import WorkspaceRequestContext
from dagster._serdes import serialize_value

from wsi_assets.queue.celery_liveness import unanswered_workers
from wsi_assets.queue.engines import BROKER_ENV
from wsi_assets.queue.gpu_slots import held, machine_slot, postgres_slot
from wsi_assets.queue.launched_by import PROXY_USER_HEADER, InvalidProxyUser, launched_by_tags
from wsi_assets.queue.positions import PendingStep, QueueLimits, QueueRun
from wsi_assets.queue.tags import GPU_POOL, UnqueueableRun, tags_to_store
from wsi_assets.queue.workers import worker_alive

RUN_PROCESS_MESSAGE = "Started process for run (pid: "
CELERY_STEP_MESSAGE = " in celery worker"  # dagster_celery.tasks: "Executing steps <keys> in celery worker"
CELERY_WORKER_FIELD = "Celery worker"
STEP_ENDS = (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_UP_FOR_RETRY)


def ensure_pool_slots(instance, pool: str = GPU_POOL) -> None:
    """Give the pool exactly dagster.yaml's `concurrency.pools.default_limit` slots, before runs claim any.

    Dagster otherwise creates a pool's slots at the first claim, by count-then-insert; two runs
    claiming at once can each add a slot, and the pool then lets two steps through (seen with
    limit 1 in the queue benchmark). dagster.yaml stays the one place that says how many GPUs.
    """
    limit = instance.global_op_concurrency_default_limit
    storage = instance.event_log_storage
    if limit is None or not storage.supports_global_concurrency_limits:
        return
    if pool not in storage.get_concurrency_keys() or storage.get_concurrency_info(pool).slot_count != limit:
        storage.set_concurrency_slots(pool, limit)


class SlideRunCoordinator(QueuedRunCoordinator):
    """QueuedRunCoordinator that stores `wsi/user` and `wsi/branch` on each run before queueing it."""

    _pools_checked = False

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        if not self._pools_checked:
            ensure_pool_slots(self._instance)
            self._pools_checked = True
        run = context.dagster_run
        wanted: dict[str, str] = {}
        problem = None
        try:
            # Who launched it goes first, so a refused run still says who tried.
            wanted.update(viewer_tags(context.workspace))
            wanted.update(tags_to_store(run.tags))
        except (InvalidProxyUser, UnqueueableRun) as error:
            problem = str(error)
        new_tags = {key: value for key, value in wanted.items() if run.tags.get(key) != value}
        if new_tags:
            # with_tags() would change only this in-memory copy; the queue daemon reads storage.
            self._instance.add_run_tags(run.run_id, new_tags)
            run = self._instance.get_run_by_id(run.run_id) or run.with_tags({**run.tags, **new_tags})
            context = SubmitRunContext(run, context.workspace)
        if problem:
            self._instance.report_run_failed(run, problem)
            return self._instance.get_run_by_id(run.run_id) or run
        return super().submit_run(context)


def viewer_tags(workspace) -> dict[str, str]:
    """The tags Dagster gives what this request launches (backfills use them; runs, here, too).

    {} outside a webserver request and in a webserver that does not trust the proxy's header.
    """
    return dict(workspace.get_viewer_tags()) if workspace is not None else {}


def proxy_user_tags(request_context) -> dict[str, str]:
    """The audit tags for the user deploy/auth's proxy named in this request's header."""
    headers = getattr(request_context.source, "headers", None)  # the Starlette request or websocket
    return launched_by_tags(headers.get(PROXY_USER_HEADER) if headers is not None else None)


_dagster_viewer_tags = WorkspaceRequestContext.get_viewer_tags


def trust_proxy_user_header() -> None:
    """Make this process's webserver tag what its requests launch with the proxy's user.

    Dagster OSS has the hook (viewer tags, merged into backfills) but no user to fill it with;
    only wsi_assets.cli.webserver calls this, behind the proxy that sets the header.
    """

    def with_proxy_user(self) -> dict[str, str]:
        return {**_dagster_viewer_tags(self), **proxy_user_tags(self)}

    WorkspaceRequestContext.get_viewer_tags = with_proxy_user  # type: ignore[method-assign]


class SlideRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers the monitoring daemon can check.

    Runs launched on a local code server (the default) report their worker's pid; a worker
    that died (SIGKILL, OOM killer) is noticed at the next monitoring poll and its run failed,
    which frees its branch for the next run.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = run_worker_pid(self._instance, run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker has not reported its pid yet")
        pid, reported_at = worker
        if not worker_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed)")
        lost = lost_celery_steps(self._instance, run.run_id)
        if lost:
            # The run's own process would wait for the lost task for ever: stop it, fail the run.
            os.kill(pid, signal.SIGKILL)
            steps = ", ".join(f"{step} on {host}" for step, host in lost)
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"Celery worker gone in the middle of a step ({steps}); the run is failed so its branch moves on",
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def run_worker_pid(instance, run_id: str) -> tuple[int, float] | None:
    """The pid of a run's worker process and when it reported it, from the run's engine events."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    found = None
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is not None and (event.message or "").startswith(RUN_PROCESS_MESSAGE):
            found = (int(event.engine_event_data.metadata["pid"].value), entry.timestamp)
    return found


def celery_steps_in_flight(instance, run_id: str) -> dict[str, str]:
    """Steps a Celery worker has started and not yet ended, with the worker's name."""
    started: dict[str, tuple[int, str]] = {}  # step -> (storage id of its latest start, worker)
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or CELERY_STEP_MESSAGE not in (event.message or "") or not entry.step_key:
            continue
        worker = event.engine_event_data.metadata.get(CELERY_WORKER_FIELD)
        if worker is not None:
            started[entry.step_key] = (record.storage_id, str(worker.value))
    if not started:
        return {}
    ended: dict[str, int] = {}
    for record in instance.get_records_for_run(run_id, of_type=set(STEP_ENDS)).records:
        ended[record.event_log_entry.step_key] = record.storage_id
    # A retried step starts again after its STEP_UP_FOR_RETRY: compare positions, not presence.
    return {step: worker for step, (at, worker) in started.items() if ended.get(step, -1) < at}


def lost_celery_steps(instance, run_id: str) -> list[tuple[str, str]]:
    """(step, worker) for each step in flight on a Celery worker that no longer answers."""
    in_flight = celery_steps_in_flight(instance, run_id)
    broker = os.environ.get(BROKER_ENV)
    if not in_flight or not broker:
        return []
    gone = set(unanswered_workers(broker, sorted(set(in_flight.values()))))
    return sorted((step, host) for step, host in in_flight.items() if host in gone)


@contextmanager
def gpu_slot(instance, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold one of the `gpu` pool's slots (dagster.yaml's pool limit) for the block."""
    slots = instance.global_op_concurrency_default_limit or 1
    storage = instance.event_log_storage
    url = getattr(storage, "postgres_url", None)
    if url:
        with postgres_slot(url, GPU_POOL, slots) as slot, held(slot, log):
            yield
    elif isinstance(storage, (SqliteEventLogStorage, ConsolidatedSqliteEventLogStorage)):
        with machine_slot(Path(instance.root_directory) / f"{GPU_POOL}-slots", slots) as slot, held(slot, log):
            yield
    else:  # in-memory instances (tests, execute_in_process): one process, nothing to share
        with held(0, log):
            yield


def _queue_run(record) -> QueueRun:
    run = record.dagster_run
    return QueueRun(run.run_id, dict(run.tags), run.job_name, record.storage_id, record.create_timestamp.timestamp())


def read_queue(instance) -> tuple[list[QueueRun], list[QueueRun], QueueLimits]:
    """(queued runs, runs in progress, limits) as the queue daemon sees them at this moment.

    In progress means what the daemon counts against its limits (starting, started, canceling);
    the limits are the run coordinator's configuration, the GPU slots the `gpu` pool's.
    """
    in_progress = [_queue_run(r) for r in instance.get_run_records(RunsFilter(statuses=ACTIVE_RUN_STATUSES))]
    queued = [_queue_run(r) for r in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))]
    coordinator = instance.run_coordinator
    config = coordinator.get_run_queue_config() if isinstance(coordinator, QueuedRunCoordinator) else None
    slots = instance.global_op_concurrency_default_limit or 1
    taken = 0
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits and GPU_POOL in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(GPU_POOL)
        slots, taken = info.slot_count, len(info.claimed_slots)
    limits = QueueLimits(
        max_concurrent_runs=config.max_concurrent_runs if config else -1,
        tag_limits=tuple(config.tag_concurrency_limits or ()) if config else (),
        gpu_slots=slots,
        gpu_slots_taken=taken,
    )
    return queued, in_progress, limits


def gpu_pending_steps(instance) -> list[PendingStep]:
    """Steps of started runs that wait for a `gpu` pool slot, from Dagster's op-concurrency records."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or GPU_POOL not in storage.get_concurrency_keys():
        return []
    info = storage.get_concurrency_info(GPU_POOL)
    # A step's pending row stays while it holds its slot: only the rows without a claim wait.
    claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
    waiting = [step for step in info.pending_steps if (step.run_id, step.step_key) not in claimed]
    if not waiting:
        return []
    # A run that ended leaves its rows for run monitoring's free_slots_after_run_end_seconds.
    started = {
        r.dagster_run.run_id
        for r in instance.get_run_records(
            RunsFilter(run_ids=sorted({s.run_id for s in waiting}), statuses=[DagsterRunStatus.STARTED])
        )
    }
    return [
        PendingStep(
            step.run_id,
            step.step_key,
            step.enqueued_timestamp.timestamp(),
            step.priority or 0,
            step.assigned_timestamp is not None,
        )
        for step in waiting
        if step.run_id in started
    ]


def remove_run_tags(instance, run_id: str, keys: Sequence[str]) -> None:
    """Delete tags from a run: Dagster can add and overwrite run tags, not remove them.

    Done as Dagster's own add_run_tags is (the run body rewritten, the tag rows changed); the
    run's status column, which Dagster trusts over the body, is left alone.
    """
    storage = instance.run_storage
    run = instance.get_run_by_id(run_id)
    if run is None or not isinstance(storage, SqlRunStorage):
        return
    kept = {key: value for key, value in run.tags.items() if key not in keys}
    with storage.connect() as connection:
        connection.execute(
            RunsTable.update().where(RunsTable.c.run_id == run_id).values(run_body=serialize_value(run.with_tags(kept)))
        )
        connection.execute(RunTagsTable.delete().where((RunTagsTable.c.run_id == run_id) & RunTagsTable.c.key.in_(list(keys))))
