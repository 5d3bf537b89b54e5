"""How steps fail: user-fixable errors as one line, transient trouble retried inside the run."""

from __future__ import annotations

import functools

from dagster import Backoff, Failure, RetryPolicy

from wsi_assets.cells.store import UnreadableCellTable
from wsi_assets.core.keys import InvalidSlideKey
from wsi_assets.core.slide_outputs import MissingUpstreamOutput
from wsi_assets.slides.reader import SlideReadError

# Transient trouble (a GPU busy elsewhere, a network share hiccup) is retried inside the run:
# a whole-run retry would re-enter at the back of the branch's queue.
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)

# Problems with the user's input or an order of steps they can fix: shown as one line, not a traceback.
# A damaged stored cell table is permanent too: retrying would only wait out the back-off.
USER_FACING_ERRORS = (
    SlideReadError, InvalidSlideKey, MissingUpstreamOutput, UnreadableCellTable, FileNotFoundError, FileExistsError,
)


def fails_clearly(fn):
    """Turn a user-fixable error into a Dagster Failure whose description is the error's one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_FACING_ERRORS as error:
            raise Failure(description=str(error).splitlines()[0], allow_retries=False) from None

    return wrapper
