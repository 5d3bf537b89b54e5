"""Atomic writes: an output appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# Marks in the names of files and folders that exist only while a write is in progress: atomic
# output's temporaries, and the staging folder an export builds before zipping it.
TEMPORARY_MARKS = (".tmp-", ".staging-")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


def is_temporary_name(name: str) -> bool:
    """Whether `name` is an unfinished write's temporary (left for ever when its process is killed)."""
    return name.startswith(".") and any(mark in name for mark in TEMPORARY_MARKS)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    Readers never see a half-written output, and a failed write leaves the previous one in place.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    try:
        yield temporary
        os.replace(temporary, final) if not temporary.is_dir() else _replace_dir(temporary, final)
    except OSError as error:
        # write() and close() say "no space" without a file name (or name the temporary): the
        # output that did not fit is this one, whatever else the writing code had open.
        if error.errno in _DISK_FULL and (error.filename is None or str(error.filename) == str(temporary)):
            error.filename = str(final)
        raise
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def _replace_dir(temporary: Path, final: Path) -> None:
    # A directory cannot atomically replace a non-empty one: move the old aside first.
    if final.exists():
        old = _temporary_sibling(final)
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    with atomic_output(final) as temporary:
        temporary.write_bytes(data)
    return Path(final)


def write_text_atomic(final: Path, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))
