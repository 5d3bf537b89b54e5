"""What measuring and classifying every nucleus costs.

Per tile (CPU seconds of the process, steadier than wall time on a shared machine): segmenting a 1152² tile at the
model's µm/px, tracing its outlines, and measuring its nuclei, over the tiles of a synthetic slide.
With --whole-slide also segment_slide with and without measurements (wall and process CPU, A/B
alternated; wall time is only meaningful on an idle machine). Then the classifier over the table.

    python benchmarks/measurement_cost.py [--size 7072x7072] [--model default|learned] [--tiles 4] [--whole-slide]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from slide_throughput import synthetic_slide, tissue_of

from wsi_assets.cells.classification import DEFAULT_METHOD, classification_method, classify_stored_cells
from wsi_assets.cells.store import stored_embedding
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import NucleusMeasurer
from wsi_assets.cells.stain_vectors import DEFAULT_STAINS
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.slide import TilingSettings, segment_slide
from wsi_assets.slides.mpp import read_slide_info


def per_tile(path: Path, mpp: float, tissue, segmenter, measurer: NucleusMeasurer, count: int) -> None:
    from wsi_assets.segmentation.slide import _read_tile, owned_nuclei
    from wsi_assets.slides.reader import open_slide
    from wsi_assets.slides.tiling import make_tile_grid

    settings = TilingSettings()
    with open_slide(path) as slide:
        grid = make_tile_grid(*slide.dimensions, mpp, segmenter.mpp, settings.core, settings.margin)
        tiles = grid.tissue_tiles(tissue)[:count]
        images = [_read_tile(slide, tile, grid) for tile in tiles]
    segmenter.segment_batch(images[0][None])  # warm-up (a model's first call compiles)
    spent = {"segment": 0.0, "outlines": 0.0, "outlines + measurements": 0.0}
    nuclei = 0
    for tile, image in zip(tiles, images):
        started = time.process_time()
        labels = segmenter.segment_batch(image[None])[0]
        spent["segment"] += time.process_time() - started
        started = time.process_time()
        owned_nuclei(labels, tile, grid)
        spent["outlines"] += time.process_time() - started
        started = time.process_time()
        nuclei += len(owned_nuclei(labels, tile, grid, image, measurer))
        spent["outlines + measurements"] += time.process_time() - started
    measuring = spent["outlines + measurements"] - spent["outlines"]
    print(f"{len(tiles)} tiles, {nuclei} owned nuclei, {segmenter.name} (CPU s per tile, all threads of the process):")
    for name, seconds in spent.items():
        print(f"  {name}: {seconds / len(tiles):.3f}")
    print(
        f"  measuring alone: {measuring / len(tiles):.3f} = {100 * measuring / (spent['segment'] + spent['outlines']):.0f}% of segment + outlines"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="7072x7072")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--whole-slide", action="store_true")
    parser.add_argument("--slides-dir", type=Path, default=Path(tempfile.gettempdir()) / "wsi_bench_slides")
    args = parser.parse_args()
    args.slides_dir.mkdir(parents=True, exist_ok=True)
    path = synthetic_slide(args.size, args.seed, args.slides_dir)
    info = read_slide_info(path, 0.25)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    segmenter = get_segmenter(args.model)
    measurer = NucleusMeasurer(segmenter.mpp, DEFAULT_STAINS)
    per_tile(path, info.mpp, tissue, segmenter, measurer, args.tiles)
    if not args.whole_slide:
        return
    times = {"without": [], "with": []}
    cpu = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as work:
        cells = Path(work) / "cells.parquet"
        for _ in range(args.repeats):
            for label, chosen in (("without", None), ("with", measurer)):
                started, cpu_started = time.perf_counter(), time.process_time()
                summary = segment_slide(path, info.mpp, tissue, segmenter, cells, TilingSettings(), measurer=chosen)
                times[label].append(time.perf_counter() - started)
                cpu[label].append(time.process_time() - cpu_started)
        method = classification_method(DEFAULT_METHOD, LymphocyteRule(), None, stored_embedding(cells))
        started = time.perf_counter()
        counts = classify_stored_cells(cells, Path(work) / "classified.parquet", method, info.mpp)
        classify_s = time.perf_counter() - started
    without, with_ = min(times["without"]), min(times["with"])
    print(f"{path.name}: {summary.cells} nuclei, {summary.tiles} tiles, {segmenter.name} on {segmenter.device}")
    print(
        f"segment_slide without measurements {without:.1f} s, with {with_:.1f} s (+{100 * (with_ / without - 1):.0f}%), best of {args.repeats} (wall)"
    )
    # CPU seconds of all threads: steadier than wall time on a shared machine.
    cpu_without, cpu_with = min(cpu["without"]), min(cpu["with"])
    print(f"CPU seconds without {cpu_without:.1f}, with {cpu_with:.1f} (+{100 * (cpu_with / cpu_without - 1):.0f}%)")
    print(
        f"classifier ({method.details['classifier']}) over the stored table {classify_s:.2f} s ({summary.cells / classify_s:,.0f} cells/s): {dict(counts)}"
    )
    print(f"measure + classify cost {100 * ((with_ + classify_s) / without - 1):.0f}% of segment_slide")


if __name__ == "__main__":
    main()
