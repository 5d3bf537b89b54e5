"""Time and peak memory of `process_stack` on a synthetic stack far larger than the memory budget.

    python benchmarks/stack_memory.py --shape 2,3,32,4096,4096      # T,C,Z,Y,X uint16: 6.4 GB
    -> prints {"stack_gb": ..., "write_s": ..., "steps_s": {...}, "total_s": ..., "peak_rss_mb": ...}

The stack is written by the package's generator in a child process, so the peak resident memory
reported (this process's ru_maxrss) is process_stack's alone: Dagster, reading the TIFF, the
OME-Zarr copy with its pyramid, statistics, PCA and previews.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

WRITE = (
    "import sys; from wsi_assets.stacks.synthetic import StackSpec, write_ome_tiff; "
    "t, c, z, y, x = map(int, sys.argv[2].split(',')); write_ome_tiff(sys.argv[1], StackSpec(t=t, c=c, z=z, y=y, x=x, seed=1))"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="2,3,32,4096,4096", help="T,C,Z,Y,X")
    parser.add_argument("--work", type=Path, default=None, help="folder for the user files (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wsi_stack_"))
    os.environ["WSI_USER_FILES"] = str(work)
    upload = work / "bench" / "inputs" / "main" / "big.ome.tif"
    upload.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    repo = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", WRITE, str(upload), args.shape], check=True, env={**os.environ, "PYTHONPATH": repo})
    write_s = time.perf_counter() - started
    from dagster import DagsterInstance

    from wsi_assets.definitions import defs

    key = "bench/main/big"
    try:
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("stacks", [key])
            started = time.perf_counter()
            result = defs.resolve_job_def("process_stack").execute_in_process(instance=instance, partition_key=key)
            total_s = time.perf_counter() - started
            steps = {}
            for entry in instance.all_logs(result.run_id):
                event = entry.dagster_event
                if event is not None and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                    steps.setdefault(event.step_key, []).append(entry.timestamp)
            zarr_bytes = sum(f.stat().st_size for f in (work / "bench" / "outputs" / "main" / "big" / "stack.ome.zarr").rglob("*") if f.is_file())
        print(json.dumps({
            "shape_tczyx": args.shape,
            "stack_gb": round(upload.stat().st_size / 1e9, 2),
            "write_s": round(write_s, 1),
            "steps_s": {k: round(v[-1] - v[0], 1) for k, v in steps.items()},
            "total_s": round(total_s, 1),
            "zarr_gb": round(zarr_bytes / 1e9, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
