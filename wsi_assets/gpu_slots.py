"""Holding a GPU slot across run processes on one machine, where Dagster's pool is not enough.

Dagster's pool claim selects a free slot and then takes it. PostgreSQL locks the row between
the two (FOR UPDATE SKIP LOCKED); SQLite ignores that clause, so two runs starting together can
take the same slot (the queue benchmark saw two gpu steps at once with a limit of 1). The
SQLite instance lives on one machine, so an OS file lock per slot under $DAGSTER_HOME closes
the gap; the kernel drops the lock of a killed process.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

POLL_SECONDS = 0.2


def uses_sqlite_storage(instance) -> bool:
    from dagster._core.storage.event_log.sqlite import ConsolidatedSqliteEventLogStorage, SqliteEventLogStorage

    return isinstance(instance.event_log_storage, (SqliteEventLogStorage, ConsolidatedSqliteEventLogStorage))


@contextmanager
def machine_slot(lock_dir: Path, slots: int) -> Iterator[int]:
    """Wait for one of `slots` file locks in `lock_dir`; yields the slot number."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(max(1, slots)):
            handle = open(lock_dir / f"slot-{slot}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield slot
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(POLL_SECONDS)


@contextmanager
def gpu_slot(instance) -> Iterator[None]:
    """On a SQLite instance, hold one of the `gpu` pool's slots on this machine; elsewhere a no-op."""
    if not uses_sqlite_storage(instance):
        yield
        return
    slots = instance.global_op_concurrency_default_limit or 1
    with machine_slot(Path(instance.root_directory) / "gpu-slots", slots):
        yield
