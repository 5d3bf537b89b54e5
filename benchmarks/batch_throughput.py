"""A batch of N small images through batch_sensor and process_batch, against one plain Python loop over the segmenter.

    python benchmarks/batch_throughput.py --images 500 [--side 512] [--json out.json]

Draws N side×side H&E-like fields with the synthetic generator into a fresh user-files folder
(PNG, no stated µm/px, so each image's µm/px is estimated), then:
1. sensor: ticks of `batch_sensor` (on an ephemeral instance) until it requests the run: ticks and seconds;
2. job: `process_batch` in this process (manifest, cells with measurements and classes, exports,
   publishing): seconds, images/s, peak RSS;
3. plain loop: the same images read and segmented by `segment_image` with the default segmenter
   at the µm/px the manifest chose, one after another: seconds, images/s.
The per-image overhead is (job - loop) / N. The issue's target run is `--images 10000`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def draw(folder: Path, count: int, side: int) -> float:
    from PIL import Image

    from wsi_assets.slides.synthetic import SyntheticSlideSpec, render_region

    started = time.monotonic()
    spec = SyntheticSlideSpec(width=40_000, height=40_000, mpp=0.5, seed=5, tissue_fraction=0.9)
    per_row = (spec.width - 4_000) // side
    for i in range(count):
        row, col = divmod(i, per_row)
        Image.fromarray(render_region(spec, 1, 2_000 + col * side, 2_000 + row * side, side, side)).save(folder / f"field{i:05d}.png")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="batch_bench_"))
    root = work / "user_files"
    folder = root / "bench" / "inputs" / "main" / "fields"
    folder.mkdir(parents=True)
    os.environ["WSI_USER_FILES"] = str(root)
    drawing = draw(folder, args.images, args.side)

    from dagster import DagsterInstance, build_sensor_context

    from wsi_assets.batches.manifest import load_manifest
    from wsi_assets.definitions import defs
    from wsi_assets.defs.batches import MAX_STATS_PER_TICK, batch_sensor
    from wsi_assets.defs.resources import UserFilesResource

    figures: dict = {"images": args.images, "side": args.side, "drawing_s": round(drawing, 1), "cpus": os.cpu_count()}
    with DagsterInstance.ephemeral() as instance:
        cursor, ticks, tick_seconds, requests = None, 0, [], []
        while not requests:
            ticks += 1
            started = time.monotonic()
            result = batch_sensor(build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor))
            tick_seconds.append(time.monotonic() - started)
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions("batches", list(request.partition_keys))
            cursor, requests = result.cursor, result.run_requests
        figures.update(sensor_ticks=ticks, sensor_s=round(sum(tick_seconds), 2), longest_tick_s=round(max(tick_seconds), 2),
                       stats_per_tick=MAX_STATS_PER_TICK, runs=len(requests))
        started = time.monotonic()
        run = defs.resolve_job_def("process_batch").execute_in_process(instance=instance, partition_key=requests[0].partition_key, raise_on_error=False)
        job_s = time.monotonic() - started
        assert run.success, "process_batch failed"
    figures.update(job_s=round(job_s, 1), job_images_per_s=round(args.images / job_s, 2),
                   job_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    from wsi_assets.batches.images import read_batch_image
    from wsi_assets.segmentation.image import segment_image
    from wsi_assets.segmentation.registry import default_segmenter

    manifest = load_manifest(root / "bench" / "outputs" / "main" / "fields" / "manifest.json")
    segmenter = default_segmenter()
    started = time.monotonic()
    for image in manifest.images:
        segment_image(read_batch_image(folder / image.name).rgb, image.mpp, segmenter)
    loop_s = time.monotonic() - started
    figures.update(loop_s=round(loop_s, 1), loop_images_per_s=round(args.images / loop_s, 2),
                   overhead_ms_per_image=round(1000 * (job_s - loop_s) / args.images, 1),
                   job_vs_loop=round(loop_s / job_s, 3))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
