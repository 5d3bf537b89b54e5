"""CPU cost of the post-processing after the network, per tile, before and after issue 12.

    python benchmarks/postprocess_timing.py [--tiles 4] [--model learned|classical] [--repeat 3]

Label maps: the model (default: the shipped learned one, on the CPU) run on 1152² tissue tiles
of a synthetic slide, exactly as segment_slide reads them; cached in /tmp so later runs time
only the post-processing. Then `_relabel` (on the model's raw output), `nuclei_from_labels` and
`owned_nuclei` are timed on each tile, the old implementation (kept in
wsi_assets/testing/postprocess_reference.py) against the current one, in one thread:
process CPU-seconds per tile, best of --repeat. The outputs are checked equal on the way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from slide_throughput import synthetic_slide, tissue_of

from wsi_assets.cells.table import nuclei_from_labels
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.slide import TilingSettings, _read_tile, owned_nuclei
from wsi_assets.segmentation.torchscript import _relabel
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import open_slide
from wsi_assets.slides.tiling import make_tile_grid
from wsi_assets.testing.postprocess_reference import (
    assert_same_table,
    reference_nuclei_from_labels,
    reference_owned_nuclei,
    reference_relabel,
)

REPO = Path(__file__).resolve().parents[1]

SLIDE_SIZE = "8192x8192"


def label_maps(model: str, count: int, cache: Path):
    """Raw model output (before relabelling) for `count` tissue tiles, and their tiles and grid."""
    folder = Path(tempfile.gettempdir()) / "wsi_bench_slides"
    folder.mkdir(parents=True, exist_ok=True)
    path = synthetic_slide(SLIDE_SIZE, 3, folder)
    info = read_slide_info(path)
    segmenter = get_segmenter(model, device="cpu")
    settings = TilingSettings()
    grid = make_tile_grid(info.width, info.height, info.mpp, segmenter.mpp, settings.core, settings.margin)
    tiles = grid.tissue_tiles(tissue_of(path, info.mpp, info.width, info.height))
    # Tiles spread over the tissue, not its first row, which is mostly edge.
    tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, min(count, len(tiles))).round().astype(int)]
    if cache.exists():
        raw = np.load(cache)["raw"]
        if len(raw) == len(tiles):
            return raw, tiles, grid
    with open_slide(path) as slide:
        images = np.stack([_read_tile(slide, t, grid) for t in tiles])
    started = time.perf_counter()
    if hasattr(segmenter, "_forward"):  # the raw labels, so _relabel can be timed on them
        raw = np.concatenate([segmenter._forward(images[i : i + 1]) for i in range(len(images))])
    else:
        raw = segmenter.segment_batch(images)
    print(
        f"segmented {len(tiles)} tiles of {grid.tile_pixels}² with {model} in {time.perf_counter() - started:.0f} s", flush=True
    )
    np.savez_compressed(cache, raw=raw)
    return raw, tiles, grid


def cpu_seconds(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--model", default="learned", help='"learned" or "classical"')
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cache = Path(tempfile.gettempdir()) / f"wsi_postprocess_labels_{args.model}_{SLIDE_SIZE}_{args.tiles}.npz"
    raw, tiles, grid = label_maps(args.model, args.tiles, cache)
    labels = [_relabel(r) for r in raw]
    print(f"{len(tiles)} tiles of {raw.shape[1]}², {sum(int(m.max()) for m in labels)} nuclei, model {args.model}, 1 thread")
    steps = {
        "_relabel": (lambda i: reference_relabel(raw[i]), lambda i: _relabel(raw[i]), np.array_equal),
        "nuclei_from_labels": (
            lambda i: reference_nuclei_from_labels(labels[i], tiles[i].read_x, tiles[i].read_y, grid.scale, grid.scale),
            lambda i: nuclei_from_labels(labels[i], tiles[i].read_x, tiles[i].read_y, grid.scale, grid.scale),
            assert_same_table,
        ),
        "owned_nuclei": (
            lambda i: reference_owned_nuclei(labels[i], tiles[i], grid),
            lambda i: owned_nuclei(labels[i], tiles[i], grid),
            assert_same_table,
        ),
    }
    print(f"{'CPU-s per tile':<20}{'before':>9}{'after':>9}{'speed-up':>10}")
    for name, (before, after, same) in steps.items():
        for i in range(len(tiles)):
            assert same(after(i), before(i)) in (None, True), f"{name} differs on tile {i}"
        old = sum(cpu_seconds(lambda: before(i), args.repeat) for i in range(len(tiles))) / len(tiles)
        new = sum(cpu_seconds(lambda: after(i), args.repeat) for i in range(len(tiles))) / len(tiles)
        print(f"{name:<20}{old:>9.4f}{new:>9.4f}{old / new:>9.1f}x", flush=True)


if __name__ == "__main__":
    main()
