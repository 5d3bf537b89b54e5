"""Time `process_slide` on one slide, in process, on a throwaway instance and user-files folder.

    python benchmarks/process_slide_timing.py [SLIDE]     (default: ../shared CMU-1-Small-Region,
                                                           else a 12000x9000 synthetic slide)
Prints nuclei, tiles, and seconds per step.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REAL_SLIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="wsi_bench_"))
    os.environ["WSI_USER_FILES"] = str(work / "user_files")
    from dagster import DagsterInstance

    from wsi_assets.definitions import defs

    if len(sys.argv) > 1:
        source = Path(sys.argv[1])
    elif REAL_SLIDE.exists():
        source = REAL_SLIDE
    else:
        from wsi_assets.cli.demo import DEMO_SPEC
        from wsi_assets.slides.synthetic import write_synthetic_slide

        source = work / "synthetic.svs"
        write_synthetic_slide(source, DEMO_SPEC)
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in source.stem)
    target = work / "user_files" / "bench" / "inputs" / "main" / f"{stem}{source.suffix}"
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    key = f"bench/main/{stem}"
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("slides", [key])
        started = time.perf_counter()
        result = defs.resolve_job_def("process_slide").execute_in_process(instance=instance, partition_key=key)
        total = time.perf_counter() - started
        durations = {}
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                durations[event.step_key] = event.event_specific_data.duration_ms / 1000
    segmentation = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}[
        "cell_segmentation"
    ]
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"slide: {source.name}")
    print(f"nuclei: {segmentation['nuclei'].value}, tiles: {segmentation['tiles'].value}, device: {segmentation['device'].value}")
    for step, seconds in durations.items():
        print(f"  {step:55s} {seconds:7.2f} s")
    print(f"process_slide in process, total: {total:.1f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
