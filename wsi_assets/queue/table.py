"""The queue as a text table: one row per queued run, in the order the daemon will start them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from wsi_assets.queue.positions import GPU_SLOT, GpuWait, QueuePlace, QueueRun

COLUMNS = ("run id", "user", "branch", "partition", "job", "position", "in branch", "waiting for", "queued since")
GPU_COLUMNS = ("run id", "user", "branch", "partition", "job", "step", "gpu position", "waiting for")


def matches(place: QueuePlace | QueueRun, user: str | None, branch: str | None) -> bool:
    """`branch` is `<user>/<branch>` or only the branch's name (any user's branch of that name)."""
    run = place.run if isinstance(place, QueuePlace) else place
    if user and run.user != user:
        return False
    if branch:
        if "/" in branch:
            return run.branch == branch
        return run.branch.split("/", 1)[-1] == branch
    return True


def row(place: QueuePlace) -> tuple[str, ...]:
    run = place.run
    since = datetime.fromtimestamp(run.created_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    in_branch = "-" if place.branch_position is None else str(place.branch_position)
    return (
        run.run_id,
        run.user or "-",
        run.branch or "-",
        run.partition or "-",
        run.job or "-",
        str(place.position),
        in_branch,
        place.waiting_for,
        since,
    )


def queue_table(places: Sequence[QueuePlace]) -> str:
    return _aligned([COLUMNS, *(row(place) for place in places)])


def gpu_wait_table(waits: Sequence[tuple[GpuWait, QueueRun]]) -> str:
    """Started runs whose GPU step waits for a slot: `gpu position` 1 gets the next free slot."""
    rows = [
        (
            run.run_id,
            run.user or "-",
            run.branch or "-",
            run.partition or "-",
            run.job or "-",
            wait.step_key,
            f"{wait.position} of {wait.waiters}",
            GPU_SLOT,
        )
        for wait, run in waits
    ]
    return _aligned([GPU_COLUMNS, *rows])


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in rows)
