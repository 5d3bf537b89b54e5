"""How steps fail: user-fixable errors as one line and never retried, transient trouble retried inside the run."""

from __future__ import annotations

import errno
import functools
import io
import os

from dagster import Backoff, Failure, RetryPolicy

from wsi_assets.cells.cell_classifier import BadClassifierFile
from wsi_assets.cells.classes import UnknownCellClass
from wsi_assets.cells.classification import MeasurementsMissing
from wsi_assets.cells.lymphocyte_rule import BadRuleSetting
from wsi_assets.cells.store import UnreadableCellTable
from wsi_assets.core.confinement import HardLinkedUpload, PathOutsideUserFolder
from wsi_assets.core.keys import InvalidSlideKey
from wsi_assets.core.slide_outputs import MissingUpstreamOutput
from wsi_assets.segmentation.settings import ConfigError
from wsi_assets.segmentation.model_files import ModelLoadError
from wsi_assets.slides.errors import SlideReadError

# Transient trouble (a GPU busy or out of memory, a network share hiccup (EIO), a timeout) is
# retried inside the run: a whole-run retry would re-enter at the back of the branch's queue.
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)

# Problems with the user's input, settings, or an order of steps they can fix: shown as one
# line, not a traceback, and not retried (a retry only waits out the back-off).
# A damaged stored cell table is permanent too.
USER_FACING_ERRORS = (
    SlideReadError,
    InvalidSlideKey,
    MissingUpstreamOutput,
    UnreadableCellTable,
    FileNotFoundError,
    FileExistsError,
    PathOutsideUserFolder,
    HardLinkedUpload,
    ConfigError,
    ModelLoadError,
    BadClassifierFile,
    UnknownCellClass,
    MeasurementsMissing,
    BadRuleSetting,
)

# Disk states a retry seconds later cannot change; the message says which path and what to do.
_PERMANENT_OS_ERRORS = {
    errno.ENOSPC: "no space left on the disk holding {path}: free space there (or move the user-files folder), then run again",
    errno.EDQUOT: "disk quota exceeded writing {path}: free space in your quota, then run again",
    errno.EROFS: "{path} is on a read-only file system: make the outputs folder writable, then run again",
    errno.EACCES: "permission denied for {path}: make the folder writable (and readable) by the Dagster service user, then run again",
    errno.EPERM: "operation not permitted on {path}: check the folder's owner and permissions, then run again",
}


def user_facing_message(error: BaseException) -> str | None:
    """The one line a user can act on, or None for an error that may be transient (or a bug)."""
    if isinstance(error, USER_FACING_ERRORS):
        text = str(error).strip()
        return text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, OSError) and error.errno in _PERMANENT_OS_ERRORS:
        path = error.filename if error.filename is not None else _file_being_written(error)
        return _PERMANENT_OS_ERRORS[error.errno].format(path=path or "the output folder")
    return None


def _file_being_written(error: BaseException) -> str | None:
    """The file an OSError was about: write() and close() raise ENOSPC without a file name, so the
    innermost frame's open file (or path) is the best the user can be told."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
        for value in frame.f_locals.values():
            if isinstance(value, os.PathLike):
                return os.fspath(value)
    return None


def fails_clearly(fn):
    """Turn a user-fixable error into a Dagster Failure whose description is the error's one line, never retried."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            message = user_facing_message(error)
            if message is None:
                raise
            raise Failure(description=message, allow_retries=False) from None

    return wrapper
