"""The queue as a text table: one row per queued run, in the order the daemon will start them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from wsi_assets.queue.positions import QueuePlace

COLUMNS = ("run id", "user", "branch", "partition", "job", "position", "in branch", "waiting for", "queued since")


def matches(place: QueuePlace, user: str | None, branch: str | None) -> bool:
    """`branch` is `<user>/<branch>` or only the branch's name (any user's branch of that name)."""
    if user and place.run.user != user:
        return False
    if branch:
        if "/" in branch:
            return place.run.branch == branch
        return place.run.branch.split("/", 1)[-1] == branch
    return True


def row(place: QueuePlace) -> tuple[str, ...]:
    run = place.run
    since = datetime.fromtimestamp(run.created_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    in_branch = "-" if place.branch_position is None else str(place.branch_position)
    return (run.run_id, run.user or "-", run.branch or "-", run.partition or "-", run.job or "-", str(place.position), in_branch, place.waiting_for, since)


def queue_table(places: Sequence[QueuePlace]) -> str:
    rows = [COLUMNS, *(row(place) for place in places)]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in rows)
