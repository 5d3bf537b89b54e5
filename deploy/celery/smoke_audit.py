"""Wait for the smoke runs and check, from run records and step logs, what the Celery path promises.

    python deploy/celery/smoke_audit.py --runs 4 [--timeout 600]

Reads the instance of $DAGSTER_HOME. Exits 1 with one line per broken promise:
- every run succeeded, and every step ran in a Celery worker;
- the segmentation steps ran on a GPU worker (name gpu*), every other step on a default worker;
- never two GPU steps at once (step spans and GPU-slot holds);
- runs of a branch never overlapped and started in submission order.
Prints one JSON line of figures last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from wsi_assets.queue.dagster_adapter import CELERY_STEP_MESSAGE, CELERY_WORKER_FIELD
from wsi_assets.testing.queue_audit import audit_queue, gpu_hold_spans, max_overlap, run_spans

GPU_STEP = "cell_segmentation"
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def step_workers(instance, run_id: str) -> dict[str, str]:
    """Each step of the run and the Celery worker that executed it."""
    workers = {}
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is not None and CELERY_STEP_MESSAGE in (event.message or "") and entry.step_key:
            workers[entry.step_key] = str(event.engine_event_data.metadata[CELERY_WORKER_FIELD].value)
    return workers


def step_spans(instance, run_id: str, step_key: str) -> list[tuple[float, float]]:
    starts = [
        r.timestamp
        for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
        if r.event_log_entry.step_key == step_key
    ]
    ends = [
        r.timestamp
        for r in instance.get_records_for_run(
            run_id, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
        ).records
        if r.event_log_entry.step_key == step_key
    ]
    return list(zip(starts, ends + [float("inf")] * (len(starts) - len(ends))))


def started_steps(instance, run_id: str) -> set[str]:
    return {r.event_log_entry.step_key for r in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records}


def audit(instance, run_ids: list[str]) -> tuple[list[str], dict]:
    problems = []
    spans = run_spans(instance, run_ids)
    for span in spans:
        if span.status != "SUCCESS":
            problems.append(f"run {span.run_id} of {span.branch} ended {span.status}")
    gpu_workers, default_workers, gpu_spans = set(), set(), []
    for run_id in run_ids:
        workers, steps = step_workers(instance, run_id), started_steps(instance, run_id)
        for step in sorted(steps - set(workers)):
            problems.append(f"step {step} of run {run_id} did not run in a Celery worker")
        for step, worker in workers.items():
            on_gpu = worker.startswith("gpu")
            (gpu_workers if on_gpu else default_workers).add(worker)
            if (step == GPU_STEP) != on_gpu:
                problems.append(f"step {step} of run {run_id} ran on {worker}")
        gpu_spans += step_spans(instance, run_id, GPU_STEP)
    if len(gpu_spans) != len(run_ids):
        problems.append(f"{len(gpu_spans)} segmentation steps for {len(run_ids)} runs")
    holds = gpu_hold_spans(instance, run_ids)
    queue = audit_queue(spans, holds)
    most_gpu_steps = max(max_overlap(gpu_spans), queue.max_gpu_steps)
    if most_gpu_steps > 1:
        problems.append(f"{most_gpu_steps} GPU steps ran at once (limit 1)")
    for branch, a, b in queue.branch_overlaps:
        problems.append(f"branch {branch}: runs {a} and {b} overlapped")
    for branch, earlier, later in queue.order_violations:
        problems.append(f"branch {branch}: run {later} started before {earlier}, submitted earlier")
    figures = {
        "runs": len(run_ids),
        "branches": sorted({s.branch for s in spans}),
        "gpu_workers": sorted(gpu_workers),
        "default_workers": sorted(default_workers),
        "max_gpu_steps_at_once": most_gpu_steps,
        "max_runs_at_once": queue.max_runs_in_all,
        "run_seconds": sorted(round(s.ended - s.started, 1) for s in spans if s.started and s.ended),
    }
    return problems, figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True, help="how many runs the uploads request")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with DagsterInstance.get() as instance:
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            records = instance.get_run_records()
            if len(records) >= args.runs and all(r.dagster_run.status in DONE for r in records):
                break
            time.sleep(2)
        else:
            states = sorted(r.dagster_run.status.value for r in instance.get_run_records())
            print(f"smoke: FAILED: {args.runs} runs not finished within {args.timeout:.0f} s (runs: {states})")
            return 1
        run_ids = [r.dagster_run.run_id for r in instance.get_run_records()]
        problems, figures = audit(instance, run_ids)
    for problem in problems:
        print(f"smoke: FAILED: {problem}")
    if not problems:
        print(
            f"smoke: OK: {figures['runs']} runs; segmentation on {figures['gpu_workers']}, other steps on "
            f"{figures['default_workers']}; at most {figures['max_gpu_steps_at_once']} GPU step at once; branch order held"
        )
    print(json.dumps(figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
