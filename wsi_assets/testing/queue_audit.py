"""Reading back what the run queue did, from run records and step events.

Used by the queue tests and the queue benchmark to check the promises: runs of a branch never
overlap and start in submission order; per-user and global limits hold; at most `gpu` limit
segmentation steps at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from wsi_assets.queue.gpu_slots import HELD_MESSAGE, RELEASED_MESSAGE
from wsi_assets.queue.tags import BRANCH_TAG, USER_TAG


def _message_pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{slot}"), r"\d+"))


HELD, RELEASED = _message_pattern(HELD_MESSAGE), _message_pattern(RELEASED_MESSAGE)


@dataclass(frozen=True)
class RunSpan:
    run_id: str
    user: str
    branch: str
    submitted: float
    started: float | None
    ended: float | None
    status: str


@dataclass(frozen=True)
class QueueAudit:
    runs: int
    branch_overlaps: list[tuple[str, str, str]]  # (branch, run, run)
    order_violations: list[tuple[str, str, str]]  # (branch, earlier-submitted run, run that started first)
    max_runs_per_user: int
    max_runs_in_all: int
    max_gpu_steps: int  # runs holding a GPU slot at once

    def violations(self, user_limit: int, global_limit: int, gpu_limit: int) -> int:
        return (
            len(self.branch_overlaps)
            + len(self.order_violations)
            + int(self.max_runs_per_user > user_limit)
            + int(self.max_runs_in_all > global_limit)
            + int(self.max_gpu_steps > gpu_limit)
        )


def run_spans(instance: DagsterInstance, run_ids: list[str]) -> list[RunSpan]:
    records = instance.get_run_records(RunsFilter(run_ids=run_ids))
    spans = []
    for record in records:
        run = record.dagster_run
        spans.append(
            RunSpan(
                run_id=run.run_id,
                user=run.tags.get(USER_TAG, ""),
                branch=run.tags.get(BRANCH_TAG, ""),
                submitted=record.create_timestamp.timestamp(),
                started=record.start_time,
                ended=record.end_time,
                status=run.status.value,
            )
        )
    return spans


def gpu_hold_spans(instance: DagsterInstance, run_ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) of every time a run held a GPU slot, from the guard's log lines (gpu_slots.py).

    A step of the `gpu` pool may start while another holds the GPU (Dagster's pool over-admits,
    see gpu_slots.py) and then wait for the slot; the promise is about using the GPU.
    """
    spans = []
    for run_id in run_ids:
        held = None
        for entry in instance.all_logs(run_id):
            message = entry.user_message or ""
            if HELD.fullmatch(message):
                held = entry.timestamp
            elif RELEASED.fullmatch(message) and held is not None:
                spans.append((held, entry.timestamp))
                held = None
        if held is not None:  # the run died holding the slot
            spans.append((held, float("inf")))
    return spans


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    # Ends sort before starts at the same instant: touching intervals do not overlap.
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    current = best = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def _interval(span: RunSpan) -> tuple[float, float] | None:
    if span.started is None:
        return None
    return (span.started, span.ended if span.ended is not None else float("inf"))


def audit_queue(spans: list[RunSpan], gpu_steps: list[tuple[float, float]]) -> QueueAudit:
    by_branch: dict[str, list[RunSpan]] = defaultdict(list)
    by_user: dict[str, list[tuple[float, float]]] = defaultdict(list)
    everything = []
    for span in spans:
        interval = _interval(span)
        by_branch[span.branch].append(span)
        if interval:
            by_user[span.user].append(interval)
            everything.append(interval)
    overlaps, order = [], []
    for branch, runs in by_branch.items():
        started = sorted((r for r in runs if r.started is not None), key=lambda r: r.started)
        for a, b in zip(started, started[1:]):
            if a.ended is None or a.ended > b.started:
                overlaps.append((branch, a.run_id, b.run_id))
        by_submission = sorted(runs, key=lambda r: r.submitted)
        for earlier, later in zip(by_submission, by_submission[1:]):
            if later.started is not None and (earlier.started is None or earlier.started > later.started):
                order.append((branch, earlier.run_id, later.run_id))
    return QueueAudit(
        runs=len(spans),
        branch_overlaps=overlaps,
        order_violations=order,
        max_runs_per_user=max((max_overlap(v) for v in by_user.values()), default=0),
        max_runs_in_all=max_overlap(everything),
        max_gpu_steps=max_overlap(gpu_steps),
    )
