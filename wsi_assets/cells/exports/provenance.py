"""Where a slide's exported cells came from: slide, µm/px, segmenter, package version and time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from wsi_assets.core.version import __version__

# slide_metadata.json sits beside the segmentation/ folder (wsi_assets.core.slide_outputs).
SLIDE_METADATA = "slide_metadata.json"


def _resolution(segmentation_summary: Path) -> dict:
    """Where the slide's µm/px came from; a reader of any export must see that it was inferred."""
    metadata_file = Path(segmentation_summary).parent.parent / SLIDE_METADATA
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, ValueError):
        return {"mpp_source": "unknown", "mpp_inferred": True, "mpp_detail": f"{SLIDE_METADATA} unreadable"}
    return {
        "mpp_source": str(metadata.get("mpp_source", "unknown")),
        "mpp_inferred": bool(metadata.get("mpp_inferred", True)),
        "mpp_detail": str(metadata.get("mpp_detail", "")),
    }


def export_provenance(
    segmentation_summary: Path,
    partition_key: str,
    slide_file_name: str,
    *,
    slide_path: Path | None = None,
    run_id: str | None = None,
    settings: dict | None = None,
) -> dict:
    """Provenance for every export of a slide, from the segmentation's summary.json and the slide's metadata.

    `slide_path` is for writers that read pixels (COCO, YOLO tiles); `settings` are the branch
    settings in force for the run (wsi_assets.core.branch_settings), stored so a reader sees them.
    """
    summary = json.loads(Path(segmentation_summary).read_text())
    extra = {
        "slide_path": str(slide_path) if slide_path is not None else None,
        "run_id": run_id,
        "settings": settings,
    }
    return {
        "slide": partition_key,
        "slide_file": slide_file_name,
        "mpp": summary["mpp"],
        **_resolution(segmentation_summary),
        "segmenter": summary["segmenter"],
        "segmenter_version": summary["segmenter_version"],
        "wsi_assets_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **{name: value for name, value in extra.items() if value is not None},
    }
