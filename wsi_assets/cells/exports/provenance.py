"""Where a slide's exported cells came from: slide, µm/px, segmenter, package version and time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from wsi_assets.core.version import __version__


def export_provenance(segmentation_summary: Path, partition_key: str, slide_file_name: str) -> dict:
    """Provenance for every export of a slide, from the segmentation's summary.json."""
    summary = json.loads(Path(segmentation_summary).read_text())
    return {
        "slide": partition_key,
        "slide_file": slide_file_name,
        "mpp": summary["mpp"],
        "segmenter": summary["segmenter"],
        "segmenter_version": summary["segmenter_version"],
        "wsi_assets_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
