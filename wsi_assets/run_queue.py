"""Instance classes named in dagster.yaml: the branch-aware run coordinator and run launcher.

They are imported by the webserver, the daemon and the CLI alike, so every launch path
queues the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun

from wsi_assets.queue_tags import UnqueueableRun, tags_to_store

RUN_PROCESS_MESSAGE = "Started process for run (pid: "
GPU_POOL = "gpu"


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
        try:
            new_tags = tags_to_store(run.tags)
        except UnqueueableRun as error:
            self._instance.report_run_failed(run, str(error))
            return self._instance.get_run_by_id(run.run_id) or run
        if new_tags:
            # with_tags() would change only this in-memory copy; the queue daemon reads storage.
            self._instance.add_run_tags(run.run_id, new_tags)
            run = self._instance.get_run_by_id(run.run_id) or run.with_tags({**run.tags, **new_tags})
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time), from /proc; None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    ticks_after_boot = int(fields[19])
    boot_time = next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return boot_time + ticks_after_boot / os.sysconf("SC_CLK_TCK")


def worker_alive(pid: int, reported_at: float) -> bool:
    """Whether the worker that reported `pid` at `reported_at` still runs (not a later process with its pid)."""
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    started = _process_start_time(pid)
    return started is not None and started <= reported_at + 1.0


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
        if worker_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed)")


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
