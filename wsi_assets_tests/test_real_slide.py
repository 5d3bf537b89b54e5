"""process_slide on a real 20x H&E Aperio slide (CMU-1-Small-Region from ../shared)."""

from __future__ import annotations

import pandas as pd

from wsi_assets_tests.conftest import CMU_SLIDE


def test_process_slide_on_real_slide_finds_thousands_of_nuclei(processed_cmu):
    """The run itself is the session fixture `processed_cmu`, which other tests read too."""
    key, result, folder, before = processed_cmu
    slide = CMU_SLIDE
    assert result.success
    cells = pd.read_csv(folder / "cells.csv")
    assert len(cells) > 1500
    assert cells["centroid_x"].between(0, 2220).all() and cells["centroid_y"].between(0, 2967).all()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["nuclei_found_in_tissue"] and checks["no_duplicate_nuclei_at_tile_borders"]
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["slide_metadata"]["mpp"].value == 0.499 and metadata["slide_metadata"]["mpp_inferred"].value is False
    assert slide.read_bytes() == before
