"""Atomic writes: an output appears whole under its final name, or not at all, even across a power cut."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Marks in the names of files and folders that exist only while a write is in progress: atomic
# output's temporaries, and the staging folder an export builds before zipping it.
TEMPORARY_MARKS = (".tmp-", ".staging-")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# renameat2(2)'s flag that swaps two names in one step (Linux 3.15+, glibc 2.28+).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# A kernel, file system or C library that cannot swap names says so with one of these.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


def is_temporary_name(name: str) -> bool:
    """Whether `name` is an unfinished write's temporary (left for ever when its process is killed)."""
    return name.startswith(".") and any(mark in name for mark in TEMPORARY_MARKS)


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    Readers never see a half-written output, and a failed write leaves the previous one in place.
    The new content is on disk before the rename and the rename is on disk before this returns, so
    a power cut leaves the old output or the new one, whole. A folder replaces a folder in one
    step too: readers always find a complete copy under `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    try:
        yield temporary
        _fsync_tree(temporary)
        os.replace(temporary, final) if not temporary.is_dir() else _replace_dir(temporary, final)
        # The rename lives in the folder's own data: without this a power cut can undo it.
        _fsync_path(final.parent)
    except OSError as error:
        # write() and close() say "no space" without a file name (or name the temporary): the
        # output that did not fit is this one, whatever else the writing code had open.
        if error.errno in _DISK_FULL and (error.filename is None or str(error.filename) == str(temporary)):
            error.filename = str(final)
        raise
    finally:
        if temporary.is_dir() and not temporary.is_symlink():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists() or temporary.is_symlink():
            temporary.unlink()


def _fsync_path(path: Path) -> None:
    # fsync needs no write access: a read-only descriptor flushes a file's data and a folder's entries.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(path: Path) -> None:
    """Flush a written file, or a written folder with everything in it."""
    if path.is_symlink() or not path.exists():
        return  # nothing of its own to flush; a missing one fails in the rename that follows
    if not path.is_dir():
        _fsync_path(path)
        return
    # An OME-Zarr holds a file per chunk, thousands for a stack: one fsync each (a journal commit
    # each) takes seconds to minutes, one syncfs of the folder's file system one commit.
    if _syncfs(path):
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            file = Path(folder, name)
            if not file.is_symlink():
                _fsync_path(file)
        _fsync_path(Path(folder))


def _replace_dir(temporary: Path, final: Path) -> None:
    # A folder cannot be renamed over a non-empty one. Swapping the two names is one step, so
    # readers find the old copy or the new one under `final`, never nothing; the old copy, now
    # under the temporary name, is removed by atomic_output. A symlink switch would do as well,
    # but result sets carry real folders only (links are not carried into a new set).
    if not final.exists() and not final.is_symlink():
        os.replace(temporary, final)
    elif not _exchange(temporary, final):
        # No swap on this system (not Linux, or a file system without it): move the old copy
        # aside first, which leaves an instant with nothing under `final`.
        old = _temporary_sibling(final)
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _libc_function(name: str) -> Any:
    """A Linux C-library call Python's os module lacks; None elsewhere."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name, None)
    except OSError:  # no C library to load by name (not a Unix)
        return None


def _syncfs(folder: Path) -> bool:
    """Flush the file system holding `folder` (its data and entries); False where the system cannot."""
    syncfs = _libc_function("syncfs")
    if syncfs is None:
        return False
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(folder))
    finally:
        os.close(descriptor)
    return True


def _exchange(first: Path, second: Path) -> bool:
    """Swap two names in one step; False where the system cannot."""
    renameat2 = _libc_function("renameat2")
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    if code == errno.ENOENT:  # `second` went away meanwhile: a plain rename is then enough
        os.replace(first, second)
        return True
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def flush_to_disk(path: Path) -> None:
    """Put a file, or a folder with everything in it, on disk (for outputs not written through atomic_output)."""
    _fsync_tree(Path(path))


def flush_folder_entries(folder: Path) -> None:
    """Put a rename, link or removal inside `folder` on disk (its entries only, not its files)."""
    _fsync_path(Path(folder))


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    with atomic_output(final) as temporary:
        temporary.write_bytes(data)
    return Path(final)


def write_text_atomic(final: Path, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))
