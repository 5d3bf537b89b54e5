"""Holding a GPU slot across run processes, where Dagster's pool alone over-admits.

Dagster's pool claim selects a free slot row and then updates it, on an autocommit connection:
on PostgreSQL the row lock of `FOR UPDATE` ends with the select, and SQLite ignores the clause.
Two runs starting together can then take the same slot; the queue benchmark saw two `gpu` steps
at once with a limit of 1 on both storages. The segmentation step therefore also holds a lock
that the storage or the OS enforces, and that is dropped when its process dies:
- PostgreSQL instance (one or many machines): a session advisory lock per slot;
- SQLite instance (one machine): an OS file lock per slot under $DAGSTER_HOME.
"""

from __future__ import annotations

import fcntl
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from wsi_assets.queue.tags import GPU_POOL

POLL_SECONDS = 0.2


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
def postgres_slot(url: str, pool: str, slots: int) -> Iterator[int]:
    """Wait for one of `slots` advisory locks of `pool`; the lock lives as long as this connection."""
    import psycopg2

    pool_key = zlib.crc32(f"wsi-assets/{pool}".encode()) & 0x7FFFFFFF
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            while True:
                for slot in range(max(1, slots)):
                    cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", (pool_key, slot))
                    if cursor.fetchone()[0]:
                        try:
                            yield slot
                        finally:
                            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", (pool_key, slot))
                        return
                time.sleep(POLL_SECONDS)
    finally:
        connection.close()


HELD_MESSAGE = GPU_POOL + " slot {slot} held"
RELEASED_MESSAGE = GPU_POOL + " slot {slot} released"


@contextmanager
def held(slot: int, log: Callable[[str], None] | None) -> Iterator[None]:
    # Logged inside the lock, so the run's log shows exactly when it used the GPU.
    if log:
        log(HELD_MESSAGE.format(slot=slot))
    try:
        yield
    finally:
        if log:
            log(RELEASED_MESSAGE.format(slot=slot))
