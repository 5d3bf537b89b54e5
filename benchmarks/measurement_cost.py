"""What measuring and classifying every nucleus costs on a whole slide: segment_slide with and without
the per-tile measurements (same-process A/B, alternated), then the classifier over the stored table.

    python benchmarks/measurement_cost.py [--size 7072x7072] [--model default|learned] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slide_throughput import synthetic_slide, tissue_of  # noqa: E402

from wsi_assets.cells.classification import DEFAULT_METHOD, classification_method, classify_stored_cells  # noqa: E402
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule  # noqa: E402
from wsi_assets.cells.measurements import NucleusMeasurer  # noqa: E402
from wsi_assets.cells.stain_vectors import DEFAULT_STAINS  # noqa: E402
from wsi_assets.segmentation.registry import get_segmenter  # noqa: E402
from wsi_assets.segmentation.slide import TilingSettings, segment_slide  # noqa: E402
from wsi_assets.slides.reader import read_slide_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="7072x7072")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slides-dir", type=Path, default=Path(tempfile.gettempdir()) / "wsi_bench_slides")
    args = parser.parse_args()
    args.slides_dir.mkdir(parents=True, exist_ok=True)
    path = synthetic_slide(args.size, args.seed, args.slides_dir)
    info = read_slide_info(path, 0.25)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    segmenter = get_segmenter(args.model)
    measurer = NucleusMeasurer(segmenter.mpp, DEFAULT_STAINS)
    times = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as work:
        cells = Path(work) / "cells.parquet"
        for _ in range(args.repeats):
            for label, chosen in (("without", None), ("with", measurer)):
                started = time.perf_counter()
                summary = segment_slide(path, info.mpp, tissue, segmenter, cells, TilingSettings(), measurer=chosen)
                times[label].append(time.perf_counter() - started)
        method = classification_method(DEFAULT_METHOD, LymphocyteRule())
        started = time.perf_counter()
        counts = classify_stored_cells(cells, Path(work) / "classified.parquet", method, info.mpp)
        classify_s = time.perf_counter() - started
    without, with_ = min(times["without"]), min(times["with"])
    print(f"{path.name}: {summary.cells} nuclei, {summary.tiles} tiles, {segmenter.name} on {segmenter.device}")
    print(f"segment_slide without measurements {without:.1f} s, with {with_:.1f} s (+{100 * (with_ / without - 1):.0f}%), best of {args.repeats}")
    print(f"classifier over the stored table {classify_s:.2f} s ({summary.cells / classify_s:,.0f} cells/s): {dict(counts)}")
    print(f"measure + classify cost {100 * ((with_ + classify_s) / without - 1):.0f}% of segment_slide")


if __name__ == "__main__":
    main()
