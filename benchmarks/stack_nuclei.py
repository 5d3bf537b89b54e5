"""Nuclei in a stack: planes per second, peak memory, and how well tracks are linked, on synthetic moving nuclei.

    python benchmarks/stack_nuclei.py --shape 4,32,2048,2048 --nuclei 3000 --segmenter classical
    -> {"stack_gb": 2.15, "planes": 128, "planes_per_s": ..., "nuclei_s": ..., "peak_rss_mb": ..., "tracking": {...}}

    python benchmarks/stack_nuclei.py --shape 4,32,2048,2048 --nuclei 3000 --segmenter threshold --work /tmp/big --reuse
    -> the same stack (kept in --work), segmented by a fixed threshold: the cost of the stack machinery alone

    python benchmarks/stack_nuclei.py --tracking-sweep
    -> the fraction of true consecutive pairs linked correctly, per step size (µm per time point)

The stack (T, 2 channels DAPI + GFP, Z, Y, X, uint16) is written by the package's generator and copied
to OME-Zarr in child processes, so the peak resident memory reported (this process's ru_maxrss) is
the nuclei step's alone: segmenting every (t, z) plane, linking in 3-D, the label pyramid,
measuring every channel and tracking. `--segmenter`: "threshold" (a fixed threshold + connected
components: the stack machinery's own cost), "classical" (the weight-free floor) or "default"
(the fluorescence model).
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
    "import sys, json; from pathlib import Path; from wsi_assets.stacks.synthetic_nuclei import NucleiStackSpec, write_nuclei_stack; "
    "from wsi_assets.stacks.axes import read_stack_info; from wsi_assets.stacks.ome_zarr import write_ome_zarr; "
    "spec = NucleiStackSpec(**json.loads(sys.argv[1])); p = write_nuclei_stack(Path(sys.argv[2]), spec); "
    "write_ome_zarr(p, read_stack_info(p), Path(sys.argv[3]))"
)


def segmenter(name: str, xy_um: float):
    if name == "threshold":
        from scipy import ndimage as ndi

        return lambda gray: ndi.label(gray > 600)[0]
    from wsi_assets.stacks.plane_segmenter import stack_segmenter

    return stack_segmenter(name, xy_um).segment


def run(spec_args: dict, segmenter_name: str, work: Path, reuse: bool = False) -> dict:
    import pandas as pd

    from wsi_assets.stacks.axes import read_stack_info
    from wsi_assets.stacks.nuclei import segment_stack_nuclei
    from wsi_assets.stacks.synthetic_nuclei import NucleiStackSpec, truth_table
    from wsi_assets.stacks.track_scoring import correct_link_fraction

    upload, folder = work / "moving.ome.tif", work / "stack.ome.zarr"
    started = time.perf_counter()
    if not (reuse and upload.is_file() and folder.is_dir()):
        subprocess.run(
            [sys.executable, "-c", WRITE, json.dumps(spec_args), str(upload), str(folder)],
            check=True,
            env={**os.environ, "PYTHONPATH": REPO},
        )
    write_s = time.perf_counter() - started
    spec = NucleiStackSpec(**spec_args)
    info = read_stack_info(upload)
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    summary = segment_stack_nuclei(folder, info, 0, segmenter(segmenter_name, spec.xy_um), work / "nuclei.parquet")
    nuclei_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)  # before scoring: the peak is the nuclei step's
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)  # wall time on a shared machine overstates the cost
    table = pd.read_parquet(work / "nuclei.parquet")
    score = correct_link_fraction(table, truth_table(spec), info.physical_size_um, max_distance_um=spec.radius_um / 2)
    return {
        "shape_tczyx": list(info.shape),
        "stack_gb": round(info.nbytes / 1e9, 2),
        "segmenter": segmenter_name,
        "write_and_copy_s": round(write_s, 1),
        "planes": summary.planes,
        "nuclei_s": round(nuclei_s, 1),
        "planes_per_s": round(summary.planes / nuclei_s, 2),
        "cpu_s": round(cpu_s, 1),
        "nuclei_rows": summary.nuclei_rows,
        "true_nuclei_rows": spec.n_nuclei * spec.t,
        "peak_rss_mb": round(after.ru_maxrss / 1024),
        "tracking": {**score, "tracks": summary.tracks.get("tracks"), "gate_um": summary.tracks.get("gate_um")},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="4,32,2048,2048", help="T,Z,Y,X (two channels)")
    parser.add_argument("--nuclei", type=int, default=3000)
    parser.add_argument("--step-um", type=float, default=1.5, help="standard deviation of each X/Y step per time point")
    parser.add_argument("--segmenter", default="classical", choices=["threshold", "classical", "default"])
    parser.add_argument("--tracking-sweep", action="store_true", help="tracking score for steps of 1-6 µm on 8 small stacks each")
    parser.add_argument("--work", type=Path, default=None, help="folder for the stack (default: a temporary one, removed)")
    parser.add_argument(
        "--reuse", action="store_true", help="segment the stack already in --work (same --shape, --nuclei, --step-um)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wsi_nuclei_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.tracking_sweep:
            for step in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
                pairs = correct = 0
                for seed in range(8):
                    spec = {"t": 5, "z": 12, "y": 256, "x": 256, "n_nuclei": 40, "step_um": step, "seed": seed}
                    shutil.rmtree(work / "sweep", ignore_errors=True)
                    (work / "sweep").mkdir(parents=True)
                    found = run(spec, args.segmenter, work / "sweep")["tracking"]
                    pairs, correct = pairs + found["pairs"], correct + found["correct"]
                print(
                    json.dumps(
                        {
                            "step_um": step,
                            "radius_um": 4.0,
                            "segmenter": args.segmenter,
                            "pairs": pairs,
                            "correct": correct,
                            "fraction": round(correct / pairs, 4),
                        }
                    ),
                    flush=True,
                )
            return
        t, z, y, x = map(int, args.shape.split(","))
        spec = {"t": t, "z": z, "y": y, "x": x, "n_nuclei": args.nuclei, "step_um": args.step_um, "seed": 1}
        print(json.dumps(run(spec, args.segmenter, work, args.reuse)))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
