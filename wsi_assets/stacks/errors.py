"""The one error type for a stack that cannot be used, with a one-line message the user can act on."""

from __future__ import annotations

from wsi_assets.slides.errors import SlideReadError


class StackReadError(SlideReadError):
    """The file cannot be read as a TCZYX stack, or a request (a slice, a setting) does not fit the stack.

    A SlideReadError, so every layer that shows a slide's read error as one line (and never retries
    it) does the same for stacks.
    """
