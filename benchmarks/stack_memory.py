"""Time and peak memory of `process_stack` on a synthetic stack far larger than the memory budget.

    python benchmarks/stack_memory.py --shape 2,3,32,4096,4096      # T,C,Z,Y,X uint16: 6.4 GB
    -> prints {"stack_gb": ..., "write_s": ..., "steps_s": {...}, "total_s": ..., "peak_rss_mb": ...}

    python benchmarks/stack_memory.py --large-plane 60000            # 2 channels of 60000² uint8, tiled: a few MB on disk
    -> the same, plus "slice": time and peak RSS of writing one full-resolution plane as PNG

    python benchmarks/stack_memory.py --refused-plane 60000          # 2 planes of 60000² uint8, each one compressed strip
    -> "failed_step", "message" (the one-line refusal), time and peak RSS

The stack is written by the package's generator in a child process, so the peak resident memory
reported (this process's ru_maxrss) is process_stack's alone: Dagster, reading the TIFF, the
OME-Zarr copy with its pyramid, statistics, PCA and previews. The slice runs in a child process
of its own, so its peak is its own too.
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

REPO = str(Path(__file__).resolve().parents[1])

WRITE = (
    "import sys; from wsi_assets.stacks.synthetic import StackSpec, write_ome_tiff; "
    "t, c, z, y, x = map(int, sys.argv[2].split(',')); write_ome_tiff(sys.argv[1], StackSpec(t=t, c=c, z=z, y=y, x=x, seed=1))"
)
WRITE_LARGE_PLANE = "import sys; from wsi_assets.stacks.synthetic import write_large_plane_tiff; write_large_plane_tiff(sys.argv[1], int(sys.argv[2]))"
# The child's own peak is VmHWM: Linux carries ru_maxrss over fork and exec, so it would report this process's peak.
SLICE = (
    "import json, re, sys, time; from pathlib import Path; from wsi_assets.stacks.slices import write_slice_png; "
    "started = time.perf_counter(); _, written, how = write_slice_png(Path(sys.argv[1]), 0, 0, 1, Path(sys.argv[2])); "
    "peak = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)); "
    "print(json.dumps({'shape': list(written.shape), 'seconds': round(time.perf_counter() - started, 1), "
    "'png_mb': round(Path(sys.argv[2]).stat().st_size / 1e6, 1), 'peak_rss_mb': round(peak / 1024)}))"
)


def one_strip_planes(path: Path, side: int) -> Path:
    """Two side × side uint8 planes, each claimed to be one zlib strip: what a reader must decode whole to read any row.

    Written as a 64² file whose size tags (and OME-XML) then say `side`: the refusal comes before any
    pixel is read, so the strips' real bytes do not matter, and the file stays a few KB.
    """
    import numpy as np
    import tifffile

    small = path.with_name("small.ome.tif")
    tifffile.imwrite(small, np.zeros((2, 64, 64), np.uint8), ome=True, photometric="minisblack", metadata={"axes": "CYX"})
    with tifffile.TiffFile(small) as tif:
        xml = tif.pages.first.description.replace('SizeX="64"', f'SizeX="{side}"').replace('SizeY="64"', f'SizeY="{side}"')
    small.unlink()
    tifffile.imwrite(
        path,
        np.zeros((2, 64, 64), np.uint8),
        description=xml,
        metadata=None,
        photometric="minisblack",
        compression="zlib",
        rowsperstrip=64,
    )
    formats = {3: "H", 4: "I", 16: "Q"}
    patches = []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            for name in ("ImageWidth", "ImageLength", "RowsPerStrip"):
                tag = page.tags[name]
                patches.append((tag.valueoffset, tif.byteorder + formats[int(tag.dtype)]))
    import struct

    with open(path, "r+b") as handle:
        for offset, form in patches:
            handle.seek(offset)
            handle.write(struct.pack(form, side))
    return path


def run_process_stack(work: Path, upload: Path) -> dict:
    from dagster import DagsterInstance

    from wsi_assets.definitions import defs

    key = f"bench/main/{upload.name.split('.')[0]}"
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("stacks", [key])
        started = time.perf_counter()
        # The nuclei step with the classical segmenter: this benchmark measures the stack passes'
        # memory; the model's cost per plane is benchmarks/stack_nuclei.py's.
        run_config = {"resources": {"segmentation": {"config": {"model": "classical"}}}}
        result = defs.resolve_job_def("process_stack").execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False, run_config=run_config
        )
        total_s = time.perf_counter() - started
        steps, failed = {}, {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
                steps.setdefault(event.step_key, []).append(entry.timestamp)
            if event is not None and event.event_type_value == "STEP_FAILURE":
                failed = {
                    "failed_step": event.step_key,
                    "message": event.step_failure_data.error.message.strip().splitlines()[-1],
                }
    zarr_folder = work / "bench" / "outputs" / "main" / upload.name.split(".")[0] / "stack.ome.zarr"
    zarr_bytes = sum(f.stat().st_size for f in zarr_folder.rglob("*") if f.is_file()) if zarr_folder.is_dir() else 0
    return {
        "success": result.success,
        **failed,
        "steps_s": {k: round(v[-1] - v[0], 1) for k, v in steps.items()},
        "total_s": round(total_s, 1),
        "zarr_gb": round(zarr_bytes / 1e9, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "zarr_folder": str(zarr_folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="2,3,32,4096,4096", help="T,C,Z,Y,X")
    parser.add_argument("--large-plane", type=int, default=None, help="side of two tiled uint8 planes (replaces --shape)")
    parser.add_argument("--refused-plane", type=int, default=None, help="side of two one-strip compressed uint8 planes (refused)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the user files (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wsi_stack_"))
    os.environ["WSI_USER_FILES"] = str(work)
    upload = work / "bench" / "inputs" / "main" / "big.ome.tif"
    upload.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": REPO}
    if args.refused_plane:
        one_strip_planes(upload, args.refused_plane)
        what = {"planes": f"2 × {args.refused_plane}² uint8, one zlib strip each (size tags only)"}
    elif args.large_plane:
        subprocess.run([sys.executable, "-c", WRITE_LARGE_PLANE, str(upload), str(args.large_plane)], check=True, env=env)
        what = {"planes": f"2 × {args.large_plane}² uint8, 512² zlib tiles"}
    else:
        subprocess.run([sys.executable, "-c", WRITE, str(upload), args.shape], check=True, env=env)
        what = {"shape_tczyx": args.shape}
    write_s = time.perf_counter() - started
    try:
        found = run_process_stack(work, upload)
        zarr_folder = Path(found.pop("zarr_folder"))
        if args.large_plane and found["success"]:
            done = subprocess.run(
                [sys.executable, "-c", SLICE, str(zarr_folder), str(work / "slice.png")],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
            found["slice"] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    **what,
                    "stack_gb": round(upload.stat().st_size / 1e9, 2),
                    "stack_file_mb": round(upload.stat().st_size / 1e6, 2),
                    "write_s": round(write_s, 1),
                    **found,
                }
            )
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
