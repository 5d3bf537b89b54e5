"""The one error type for a slide file that cannot be used, with a one-line message naming the file.

Defined in core (core.errors), where branch.yaml is read; re-exported here for the slide code and its callers.
"""

from __future__ import annotations

from wsi_assets.core.errors import SlideReadError, SlideSettingsError

__all__ = ["SlideReadError", "SlideSettingsError"]
