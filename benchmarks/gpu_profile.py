"""Where whole-slide segmentation spends its time on a device: decode-only and `segment_slide` at
two thread counts, a cProfile of one `segment_slide`, and the network and the relabelling alone.

    python benchmarks/gpu_profile.py MODEL_FILE 16384x16384 profile.txt
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from slide_throughput import decode_only, synthetic_slide, tissue_of

from wsi_assets.segmentation.slide import TilingSettings, segment_slide
from wsi_assets.segmentation.torchscript import TorchScriptSegmenter, _relabel
from wsi_assets.slides.mpp import read_slide_info

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    model, size, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    work = Path(tempfile.mkdtemp(prefix="wsi_profile_"))
    path = synthetic_slide(size, 3, work)
    info = read_slide_info(path)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    segmenter = TorchScriptSegmenter(model, device="auto")
    for threads in (8, 14):
        settings = TilingSettings(read_threads=threads, batch_size=16, postprocess_threads=threads)
        started = time.perf_counter()
        decode_only(path, info.mpp, tissue, segmenter.mpp, settings)
        print("decode-only", threads, "threads:", round(time.perf_counter() - started, 2), "s", flush=True)
        started = time.perf_counter()
        segment_slide(path, info.mpp, tissue, segmenter, work / "cells.parquet", settings)
        print("segment_slide", threads, "threads:", round(time.perf_counter() - started, 2), "s", flush=True)
    settings = TilingSettings(read_threads=8, batch_size=16, postprocess_threads=8)
    profile = cProfile.Profile()
    profile.enable()
    segment_slide(path, info.mpp, tissue, segmenter, work / "cells.parquet", settings)
    profile.disable()
    with open(out, "w") as stream:
        stats = pstats.Stats(profile, stream=stream)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)
    tiles = np.random.randint(0, 255, (16, 1152, 1152, 3), np.uint8)
    segmenter.segment_batch(tiles)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    labels = segmenter._forward(tiles)
    print("network + in-model post-processing, 16 tiles:", round(time.perf_counter() - started, 3), "s")
    started = time.perf_counter()
    for tile in labels:
        _relabel(tile)
    print("relabel on the CPU, 16 tiles:", round(time.perf_counter() - started, 3), "s")


if __name__ == "__main__":
    main()
