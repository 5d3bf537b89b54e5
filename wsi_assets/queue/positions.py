"""Where each queued run stands: its place overall and in its branch, and what it waits for.

A replay of one pass of Dagster's queue daemon over the run records: queued runs in dequeue
order (higher `dagster/priority` first, then oldest first), each admitted unless the run
coordinator's tag limits or its global limit block it, admitted runs counting against the
runs after them. The limits are the coordinator's own (`tag_concurrency_limits`,
`max_concurrent_runs`), passed in, so the view cannot drift from what the queue enforces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wsi_assets.queue.tags import BRANCH_TAG, GPU_JOBS, PARTITION_TAG, PRIORITY_TAG, USER_TAG

BRANCH_BUSY = "branch busy"
USER_LIMIT = "user limit"
GLOBAL_LIMIT = "global limit"
GPU = "GPU"
NEXT = "next"  # nothing blocks it: it starts at the daemon's next dequeue (seconds)
WAITING_REASONS = (BRANCH_BUSY, USER_LIMIT, GLOBAL_LIMIT, GPU, NEXT)
LIMIT_NAMES = {BRANCH_TAG: BRANCH_BUSY, USER_TAG: USER_LIMIT}


@dataclass(frozen=True)
class QueueRun:
    """One run record, as the queue sees it. `order` is the storage's creation order."""

    run_id: str
    tags: Mapping[str, str]
    job: str = ""
    order: int = 0
    created_at: float = 0.0

    @property
    def user(self) -> str:
        return self.tags.get(USER_TAG, "")

    @property
    def branch(self) -> str:
        return self.tags.get(BRANCH_TAG, "")

    @property
    def partition(self) -> str:
        return self.tags.get(PARTITION_TAG, "")

    @property
    def priority(self) -> int:
        try:
            return int(self.tags.get(PRIORITY_TAG, "0"))
        except ValueError:
            return 0


@dataclass(frozen=True)
class QueueLimits:
    """The coordinator's limits (dagster.yaml) and the GPU pool's state."""

    max_concurrent_runs: int = -1  # -1: no global limit, as in Dagster
    tag_limits: Sequence[Mapping] = field(default_factory=tuple)  # run_coordinator tag_concurrency_limits
    gpu_slots: int = 1
    gpu_slots_taken: int = 0
    gpu_jobs: frozenset[str] = GPU_JOBS  # runs of other jobs have no GPU step to wait at


@dataclass(frozen=True)
class QueuePlace:
    run: QueueRun
    position: int  # 1 = the next run the daemon dequeues
    branch_position: int | None  # 1 = the next of its branch; None for runs without a branch
    waiting_for: str


class _TagCounts:
    """Dagster's tag-limit rules (TagConcurrencyLimitsCounter), naming the limit that blocks."""

    def __init__(self, tag_limits: Sequence[Mapping], running: Sequence[QueueRun]):
        self._limits: list[tuple[str, str | None, bool, int]] = []  # (key, value or None, per unique value, limit)
        for spec in tag_limits:
            value = spec.get("value")
            if isinstance(value, str):
                self._limits.append((spec["key"], value, False, spec["limit"]))
            else:
                per_value = isinstance(value, Mapping) and bool(value.get("applyLimitPerUniqueValue"))
                self._limits.append((spec["key"], None, per_value, spec["limit"]))
        self._counts: Counter = Counter()
        for run in running:
            self.add(run)

    def _slots(self, run: QueueRun):
        for key, value, per_value, limit in self._limits:
            if key not in run.tags or (value is not None and run.tags[key] != value):
                continue
            yield (key, run.tags[key] if (per_value or value is not None) else None), key, limit

    def blocking(self, run: QueueRun) -> str | None:
        for slot, key, limit in self._slots(run):
            if self._counts[slot] >= limit:
                return LIMIT_NAMES.get(key, f"{key} limit")
        return None

    def add(self, run: QueueRun) -> None:
        for slot, _, _ in self._slots(run):
            self._counts[slot] += 1


def dequeue_order(queued: Sequence[QueueRun]) -> list[QueueRun]:
    # sorted() is stable: oldest first within a priority, like the daemon's own sort.
    return sorted(sorted(queued, key=lambda run: run.order), key=lambda run: run.priority, reverse=True)


def queue_places(queued: Sequence[QueueRun], in_progress: Sequence[QueueRun], limits: QueueLimits) -> list[QueuePlace]:
    """Every queued run's place and reason, in dequeue order.

    The reason is the first that holds of: `branch busy` (a run of its branch is in progress, or
    queued ahead of it), the user limit (or another tag limit, named by its tag), the global
    limit, then `GPU` when the run would start but every GPU slot is taken now and its job has a
    GPU step (it will wait at its segmentation step), else `next`.
    """
    counts = _TagCounts(limits.tag_limits, in_progress)
    running = len(in_progress)
    gpu_full = limits.gpu_slots_taken >= limits.gpu_slots
    held_branches: set[str] = set()  # branches with an earlier queued run that cannot start yet
    branch_seen: Counter = Counter()
    places = []
    for position, run in enumerate(dequeue_order(queued), start=1):
        branch_position = None
        if run.branch:
            branch_seen[run.branch] += 1
            branch_position = branch_seen[run.branch]
        # Limits are uniform within a branch (dagster.yaml), so what holds a run holds the later runs of its branch.
        reason = BRANCH_BUSY if run.branch in held_branches else counts.blocking(run)
        if reason is None and limits.max_concurrent_runs != -1 and running >= limits.max_concurrent_runs:
            reason = GLOBAL_LIMIT
        if reason is None:
            counts.add(run)
            running += 1
            reason = GPU if gpu_full and run.job in limits.gpu_jobs else NEXT
        elif run.branch:
            held_branches.add(run.branch)
        places.append(QueuePlace(run, position, branch_position, reason))
    return places


POSITION_TAG = "wsi/queue_position"
BRANCH_POSITION_TAG = "wsi/branch_position"
WAITING_TAG = "wsi/waiting_for"
PLACE_TAGS = (POSITION_TAG, BRANCH_POSITION_TAG, WAITING_TAG)


def place_tags(place: QueuePlace) -> dict[str, str]:
    """The run tags that show a place in the Runs list, e.g. `3`, `1`, `branch busy`."""
    tags = {POSITION_TAG: str(place.position), WAITING_TAG: place.waiting_for}
    if place.branch_position is not None:
        tags[BRANCH_POSITION_TAG] = str(place.branch_position)
    return tags


def changed_place_tags(places: Sequence[QueuePlace]) -> dict[str, dict[str, str]]:
    """run id -> the place tags whose value differs from what the run already carries."""
    changes = {}
    for place in places:
        wanted = place_tags(place)
        changed = {key: value for key, value in wanted.items() if place.run.tags.get(key) != value}
        if changed:
            changes[place.run.run_id] = changed
    return changes


# What each reason means, for the run's own log (its page in the UI shows the log, not the tags).
REASON_EXPLAINED = {
    BRANCH_BUSY: "an earlier run of {branch} is in progress or ahead of it; a branch runs one run at a time, in order",
    USER_LIMIT: "{user} has as many runs in progress as the per-user limit allows",
    GLOBAL_LIMIT: "as many runs are in progress as the instance's global limit allows",
    GPU: "every GPU slot is taken: it starts at the next dequeue, then waits at its GPU step",
    NEXT: "nothing: it starts at the queue daemon's next pass, within seconds",
}


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def place_message(place: QueuePlace) -> str:
    """The run-log line for a queued run's place, e.g. `Queued: 3rd in line, 2nd in branch ana/main;
    waiting for: branch busy (an earlier run of ana/main is in progress or ahead of it; …)`."""
    run = place.run
    where = f"Queued: {ordinal(place.position)} in line"
    if place.branch_position is not None:
        where += f", {ordinal(place.branch_position)} in branch {run.branch}"
    explained = REASON_EXPLAINED.get(place.waiting_for, "a run-queue limit on that tag is reached")
    return f"{where}; waiting for: {place.waiting_for} ({explained.format(branch=run.branch, user=run.user or 'its user')})"


# A run that has started can still wait: its GPU step for a slot of the `gpu` pool (Dagster's op
# concurrency). Dagster shows that only as a DEBUG line, so the run looks like it does nothing.
GPU_SLOT = "gpu slot"
GPU_POSITION_TAG = "wsi/gpu_slot_position"
GPU_WAIT_TAGS = (WAITING_TAG, GPU_POSITION_TAG)
ALL_WAIT_TAGS = (*PLACE_TAGS, GPU_POSITION_TAG)


@dataclass(frozen=True)
class PendingStep:
    """A step of a run registered with the `gpu` pool and not holding a slot yet."""

    run_id: str
    step_key: str
    enqueued_at: float
    priority: int = 0
    assigned: bool = False  # Dagster has picked it for the next free slot; it claims it at its next try


@dataclass(frozen=True)
class GpuWait:
    run_id: str
    step_key: str
    position: int  # 1 = the next step to get a slot
    waiters: int


def gpu_waits(pending: Sequence[PendingStep]) -> list[GpuWait]:
    """One wait per run, in the order Dagster hands out slots: assigned steps, then priority, then oldest.

    A run with several waiting GPU steps is placed by its first.
    """
    ordered = sorted(pending, key=lambda step: (not step.assigned, -step.priority, step.enqueued_at))
    waits: dict[str, GpuWait] = {}
    for step in ordered:
        if step.run_id not in waits:
            waits[step.run_id] = GpuWait(step.run_id, step.step_key, len(waits) + 1, 0)
    return [GpuWait(w.run_id, w.step_key, w.position, len(waits)) for w in waits.values()]


def gpu_wait_tags(wait: GpuWait) -> dict[str, str]:
    return {WAITING_TAG: GPU_SLOT, GPU_POSITION_TAG: str(wait.position)}


def gpu_wait_message(wait: GpuWait) -> str:
    return f"{wait.step_key} is waiting for a {GPU_SLOT}: {wait.position} of {wait.waiters} waiting (the `gpu` pool's slots are all taken)"


def changed_gpu_wait_tags(waits: Sequence[GpuWait], current: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """run id -> the GPU wait tags to write, for runs whose tags (`current`) differ from their wait."""
    changes = {}
    for wait in waits:
        tags = current.get(wait.run_id, {})
        changed = {key: value for key, value in gpu_wait_tags(wait).items() if tags.get(key) != value}
        if changed:
            changes[wait.run_id] = changed
    return changes
