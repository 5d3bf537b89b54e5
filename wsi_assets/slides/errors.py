"""The one error type for a slide file that cannot be used, with a one-line message naming the file."""

from __future__ import annotations


class SlideReadError(RuntimeError):
    """The file cannot be read as a slide (or its stated settings cannot be used)."""


class SlideSettingsError(SlideReadError):
    """A sidecar or branch.yaml that states a slide's settings is malformed."""
