"""The error types raised by core's settings readers, kept here so that core imports nothing above it.

`wsi_assets.slides.errors` re-exports them: a slide file that cannot be used and a settings
file that cannot be used (branch.yaml or a sidecar) are one family for the callers that catch them.
"""

from __future__ import annotations


class SlideReadError(RuntimeError):
    """The file cannot be read as a slide (or its stated settings cannot be used)."""


class SlideSettingsError(SlideReadError):
    """A sidecar or branch.yaml that states a slide's settings is malformed."""
