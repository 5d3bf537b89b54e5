"""Fluorescence segmentation speed: fields per second through `segment_image`, and a large tiled plane, with peak RSS.

    python benchmarks/fluorescence_speed.py [--images 24] [--plane-side 4096] [--threads 0] [--json PATH]

Fields: the first N DSB fluorescence images (../shared/data/nuclei_fluo_train, 256² to 520x696)
as 2-D arrays, µm/px unknown (estimated per image, as an upload without metadata), then with the
µm/px given. Plane: a mosaic of DSB fields `--plane-side` px square through `segment_fluorescence`
in tiles (memory bounded by the tiles, not the plane). Peak RSS is the process's maximum resident
set (getrusage), which includes torch and the model (~400 MB before any image). CPU seconds
(process time, all threads) are given beside wall time: on a shared machine they say more.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FLUO = REPO.parent / "shared" / "data" / "nuclei_fluo_train" / "dsb2018_fluorescence" / "images"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mosaic(images: list[np.ndarray], side: int) -> np.ndarray:
    """A side x side plane tiled with the fields (cropped to 256²), as a large camera or a stitched scan gives."""
    crops = [image[:256, :256] for image in images if image.shape[0] >= 256 and image.shape[1] >= 256]
    plane = np.zeros((side, side), np.uint8)
    n = 0
    for y in range(0, side, 256):
        for x in range(0, side, 256):
            crop = crops[n % len(crops)]
            plane[y : y + 256, x : x + 256] = crop[: side - y, : side - x]
            n += 1
    return plane


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--plane-side", type=int, default=4096, help="0 skips the large plane")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from wsi_assets.segmentation.fluorescence import fluorescence_model, segment_fluorescence
    from wsi_assets.segmentation.image import segment_image_with_info

    paths = sorted(FLUO.glob("*.png"))[:: max(1, len(list(FLUO.glob("*.png"))) // max(1, args.images))][: args.images]
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    start = time.perf_counter()
    fluorescence_model()
    load_s = time.perf_counter() - start
    rss_loaded = peak_rss_mb()
    segment_image_with_info(images[0])  # warm-up: first-call allocations and torch's kernel selection
    results = {
        "torch_threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 2),
        "peak_rss_after_load_mb": round(rss_loaded),
    }
    for label, given in (("mpp unknown (estimated)", False), ("mpp given", True)):
        start, cpu, nuclei, pixels = time.perf_counter(), time.process_time(), 0, 0
        for image in images:
            info = segment_image_with_info(image, mpp=0.5 if given else None)
            nuclei += int(info.labels.max())
            pixels += image.size
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        results[label] = {
            "images": len(images),
            "megapixels": round(pixels / 1e6, 2),
            "nuclei": nuclei,
            "seconds": round(seconds, 2),
            "cpu_seconds_per_image": round(cpu / len(images), 2),
            "images_per_s": round(len(images) / seconds, 2),
            "peak_rss_mb": round(peak_rss_mb()),
        }
        print(label, results[label], flush=True)
    if args.plane_side:
        plane = mosaic(images, args.plane_side)
        start, cpu = time.perf_counter(), time.process_time()
        result = segment_fluorescence(plane, mpp=0.5)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        results["plane"] = {
            "side": args.plane_side,
            "megapixels": round(plane.size / 1e6, 1),
            "tiles": result.tiles,
            "nuclei": result.count,
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "megapixels_per_s": round(plane.size / 1e6 / seconds, 3),
            "peak_rss_mb": round(peak_rss_mb()),
        }
        print("plane", results["plane"], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
