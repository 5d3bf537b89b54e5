"""The warning a user needs when a run publishes a set without the cells the previous set had.

tissue_mask_only redoes the tissue mask, so the previous cells (found on the old mask) and their
exports are not carried into its set, and the slide leaves the branch's summary.xlsx. That is
by design (result_sets.stage_run_set), and surprising: the run's log says so when it happens.
"""

from __future__ import annotations

import json
from pathlib import Path

from wsi_assets.core.slide_outputs import STAGES, SlideOutputs


def dropped_cells_warning(previous_set: Path | None, published_stage: str, label: str, job_name: str) -> str | None:
    """The warning when a set through `published_stage` replaces `previous_set`, which held cells; else None."""
    if STAGES.index(published_stage) >= STAGES.index("cells") or previous_set is None:
        return None
    previous = SlideOutputs(previous_set)
    if not previous.cells_parquet.exists():
        return None
    try:
        nuclei = f"{int(json.loads(previous.segmentation_json.read_text())['cells']):,} nuclei"
    except (OSError, ValueError, KeyError, TypeError):
        nuclei = "nuclei"
    exports = sorted(
        entry.name
        for entry in previous_set.iterdir()
        # report.html is rewritten with every set, not an export a user would miss.
        if previous.stage_of(entry.name) == "exports"
        and entry.name != previous.report_html.name
        and not entry.name.startswith(".")
    )
    shown = f" and its exports ({', '.join(exports)})" if exports else ""
    return (
        f"{label}: {job_name} published a result set without cells: the previous set's {nuclei}{shown} "
        f"are no longer published, and the slide drops out of the branch's summary.xlsx; run process_slide to segment it again"
    )
