"""A batch of N small images through batch_sensor and process_batch, against one plain Python loop over the segmenter.

    python benchmarks/batch_throughput.py --images 500 [--side 512] [--distinct D] [--loop-images K] [--json out.json]

Draws N side×side H&E-like fields with the synthetic generator into a fresh user-files folder
(PNG, no stated µm/px, so the batch's µm/px is estimated; with --distinct D only D fields are
drawn and the others are their flips and quarter-turns, which keeps a 10,000-image run's
drawing to minutes), then:
1. sensor: ticks of `batch_sensor` (on an ephemeral instance) until it requests the run: ticks and seconds;
2. job: `process_batch` in this process (manifest, cells with measurements and classes, exports,
   publishing): seconds, images/s, peak RSS;
3. plain loops: the same images read and segmented at the µm/px the manifest chose, by a model
   loaded afresh (as the job's was), one after another:
   - `segment_image` per image, the loop a user would write first;
   - `segment_images` a few images per call, the same network calls the job makes (on a CPU,
     small fields run side by side, one per core).
   Seconds and images/s of each. `--loop-images K` times the loops on the first K images only
   (images/s is a rate; a 10,000-image loop would double the run).
The per-image overhead is job s/image - loop s/image. The issue's target run is `--images 10000`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


SPEC_ARGS = dict(width=40_000, height=40_000, mpp=0.5, seed=5, tissue_fraction=0.9)


def _draw_one(job: tuple[str, int, int, int]) -> None:
    """Field `source` of the synthetic slide, turned by one of the 8 flips and quarter-turns."""
    from PIL import Image

    from wsi_assets.slides.synthetic import SyntheticSlideSpec, render_region

    path, source, variant, side = job
    spec = SyntheticSlideSpec(**SPEC_ARGS)
    row, col = divmod(source, (spec.width - 4_000) // side)
    rgb = render_region(spec, 1, 2_000 + col * side, 2_000 + row * side, side, side)
    rgb = np.rot90(rgb[:, ::-1] if variant >= 4 else rgb, variant % 4)
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, compress_level=1)


def draw(folder: Path, count: int, side: int, distinct: int) -> float:
    """`count` PNG fields: `distinct` drawn ones, the rest their flips and turns (8 variants each)."""
    started = time.monotonic()
    distinct = max(min(distinct or count, count), -(-count // 8))
    jobs = [(str(folder / f"field{i:05d}.png"), i % distinct, i // distinct, side) for i in range(count)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_draw_one, jobs, chunksize=16))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument(
        "--distinct", type=int, default=0, help="fields drawn; the others are their flips and turns (default: all drawn)"
    )
    parser.add_argument("--loop-images", type=int, default=0, help="images timed in the plain loops (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="batch_bench_"))
    root = work / "user_files"
    folder = root / "bench" / "inputs" / "main" / "fields"
    folder.mkdir(parents=True)
    os.environ["WSI_USER_FILES"] = str(root)
    drawing = draw(folder, args.images, args.side, args.distinct)

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
            result = batch_sensor(
                build_sensor_context(
                    instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor
                )
            )
            tick_seconds.append(time.monotonic() - started)
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions("batches", list(request.partition_keys))
            cursor, requests = result.cursor, result.run_requests
        figures.update(
            sensor_ticks=ticks,
            sensor_s=round(sum(tick_seconds), 2),
            longest_tick_s=round(max(tick_seconds), 2),
            stats_per_tick=MAX_STATS_PER_TICK,
            runs=len(requests),
        )
        started = time.monotonic()
        run = defs.resolve_job_def("process_batch").execute_in_process(
            instance=instance, partition_key=requests[0].partition_key, raise_on_error=False
        )
        job_s = time.monotonic() - started
        assert run.success, "process_batch failed"
    figures.update(
        job_s=round(job_s, 1),
        job_images_per_s=round(args.images / job_s, 2),
        job_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )

    from wsi_assets.batches.cells import images_per_network_call
    from wsi_assets.batches.images import read_batch_image
    from wsi_assets.models import SHIPPED_MODEL_FILE
    from wsi_assets.segmentation.image import segment_image, segment_images
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    manifest = load_manifest(root / "bench" / "outputs" / "main" / "fields" / "manifest.json")
    looped = manifest.images[: args.loop_images or None]
    job_per_image = job_s / args.images

    segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE)
    started = time.monotonic()
    for image in looped:
        segment_image(read_batch_image(folder / image.name).rgb, image.mpp, segmenter)
    loop_s = time.monotonic() - started
    figures.update(
        loop_images=len(looped),
        loop_s=round(loop_s, 1),
        loop_images_per_s=round(len(looped) / loop_s, 2),
        overhead_ms_per_image=round(1000 * (job_per_image - loop_s / len(looped)), 1),
        job_vs_loop=round(loop_s / len(looped) / job_per_image, 3),
    )

    segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE)
    stack = images_per_network_call(segmenter)
    started = time.monotonic()
    for first in range(0, len(looped), stack):
        group = looped[first : first + stack]
        segment_images([read_batch_image(folder / image.name).rgb for image in group], [image.mpp for image in group], segmenter)
    grouped_s = time.monotonic() - started
    figures.update(
        grouped_loop_images_per_call=stack,
        grouped_loop_s=round(grouped_s, 1),
        grouped_loop_images_per_s=round(len(looped) / grouped_s, 2),
        job_vs_grouped_loop=round(grouped_s / len(looped) / job_per_image, 3),
    )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
