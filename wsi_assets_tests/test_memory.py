"""Memory stays flat: the slide and its polygons are streamed, never held whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wsi_assets.slides.synthetic import SyntheticSlideSpec, count_synthetic_nuclei, write_synthetic_slide

REPO = Path(__file__).resolve().parents[1]
MODEL_MPP = 0.5
# 805 Mpx at 0.25 µm/px (2.4 GB of level-0 RGB) against 12.6 Mpx of the same tissue. The fixed
# cost of the libraries cancels in the difference of their peaks; what is left is what grows
# with the slide. Seen on the 2-core machine: 518 -> 829 MB (+311 MB) while other work shared
# it, 481 -> 774 MB (+293 MB) with MALLOC_ARENA_MAX=2. A product holding the large slide at
# model resolution (0.5 µm/px: 16384 x 12288 x 3 = 576 MiB) peaked at 1,384 MB (+866 MB).
# The product's absolute ceiling (2 GB for any slide) is a goal measured by
# benchmarks/peak_memory.py and recorded in benchmarks/RESULTS.md: the absolute peak depends on
# the machine (its cores set the post-processing threads), the growth does not.
LARGE = dict(width=32_768, height=24_576, seed=21)
SMALL = dict(width=4_096, height=3_072, seed=21)


def peak_of_process_slide(path: Path) -> dict:
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "peak_memory.py"), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3000,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def slide_at_model_resolution_mb(spec: SyntheticSlideSpec) -> float:
    scale = spec.mpp / MODEL_MPP
    return (spec.width * scale) * (spec.height * scale) * 3 / 2**20


@pytest.mark.slow
def test_memory_growth_from_a_small_to_a_large_slide_is_less_than_the_slide_at_model_resolution(tmp_path):
    large, small = SyntheticSlideSpec(**LARGE), SyntheticSlideSpec(**SMALL)
    write_synthetic_slide(tmp_path / "large.svs", large)
    write_synthetic_slide(tmp_path / "small.svs", small)
    on_small = peak_of_process_slide(tmp_path / "small.svs")
    on_large = peak_of_process_slide(tmp_path / "large.svs")

    growth = on_large["peak_rss_mb"] - on_small["peak_rss_mb"]
    assert growth < slide_at_model_resolution_mb(large), (on_small, on_large)
    drawn = count_synthetic_nuclei(large)
    assert abs(on_large["nuclei"] - drawn) <= 0.02 * drawn, (on_large, drawn)
