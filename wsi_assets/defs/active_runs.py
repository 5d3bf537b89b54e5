"""One run at a time per slide, stack or batch, however it was launched.

The queue runs a branch's runs one at a time, but a run launched around it (`dagster job execute`,
an instance without the project's run coordinator, `execute_in_process`) can overlap another run of
the same partition. Each stages its own result set, and making a set sweeps the slide's other sets,
so both runs would lose their files half-way. The run that started later stops at its first step
instead, in one line. The instance is asked, not a lock file: the steps of one run may execute in
different processes or on different machines (Celery, Kubernetes), where no lock outlives a step.
"""

from __future__ import annotations

from dagster import AssetExecutionContext, DagsterRunStatus, Failure, RunsFilter

# A STARTING run has run no step yet; once STARTED, its first step sees this run and stops itself.
_IN_PROGRESS = [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _started(record) -> tuple[float, str]:
    when = record.start_time if record.start_time is not None else record.create_timestamp.timestamp()
    return when, record.dagster_run.run_id


def refuse_if_another_run_is_active(context: AssetExecutionContext) -> None:
    """Failure when a run of this partition that started before this one is still in progress."""
    key, run_id = context.partition_key, context.run.run_id
    records = context.instance.get_run_records(RunsFilter(tags={"dagster/partition": key}, statuses=_IN_PROGRESS))
    mine = next((r for r in records if r.dagster_run.run_id == run_id), None) or context.instance.get_run_record_by_id(run_id)
    if mine is None:
        return
    earlier = sorted(_started(r) for r in records if r.dagster_run.run_id != run_id and _started(r) < _started(mine))
    if earlier:
        other = earlier[0][1]
        raise Failure(
            description=f"another run of {key} is in progress (run {other[:8]}); wait for it or cancel it, then launch this again",
            allow_retries=False,
        )
