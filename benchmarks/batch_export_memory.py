"""Seconds and peak memory of a batch's exports (COCO, YOLO-seg, Excel, JSON) for a synthetic cell table.

    python benchmarks/batch_export_memory.py                          # 2,000 images x 300 nuclei
    python benchmarks/batch_export_memory.py --images 10000 --cells 300 --formats all

No images and no segmentation: cells.parquet is random 24-vertex nuclei in the batch cell
table's schema, 32 images a row group as batch_cells writes it, cached under /tmp. Each format,
then all of them together (`write_batch_exports`, what the batch_exports asset runs), writes in a
fresh subprocess: its peak RSS (ru_maxrss) and that minus the RSS after its imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CACHE = Path("/tmp/wsi_batch_export_benchmark")
ALL = "all"


def stored_batch(images: int, cells: int) -> tuple[Path, Path]:
    """(cells.parquet, manifest.json) of a synthetic batch, built once and cached."""
    from wsi_assets.testing.synthetic_batch import synthetic_manifest, write_batch_cells

    folder = CACHE / f"batch_{images}x{cells}"
    cells_path, manifest_path = folder / "cells.parquet", folder / "manifest.json"
    if not manifest_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        manifest = synthetic_manifest("bench/main/batch", [f"field_{i:05d}.png" for i in range(images)], 512, 512)
        count = write_batch_cells(cells_path, manifest, cells)
        manifest_path.write_text(json.dumps(manifest.as_dict()))
        print(f"built {count:,} nuclei in {time.perf_counter() - started:.1f} s: {cells_path}", file=sys.stderr)
    return cells_path, manifest_path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, cells: Path, manifest_path: Path, folder: Path) -> None:
    """Runs in the subprocess: one format's write (or all of them), measured against the RSS after the imports."""
    import openpyxl  # noqa: F401 - loaded before the baseline, as in a worker that has written one workbook
    import pyarrow.parquet  # noqa: F401

    from wsi_assets.batches.manifest import load_manifest
    from wsi_assets.batches.exports import BATCH_EXPORT_FORMATS, write_batch_exports

    manifest = load_manifest(manifest_path)
    baseline = _rss_mb()
    started = time.perf_counter()
    if name == ALL:
        written = write_batch_exports(cells, manifest, folder)
    else:
        export = next(e for e in BATCH_EXPORT_FORMATS if e.name == name)
        written = export.write(cells, manifest, folder / export.file_name)
    seconds = time.perf_counter() - started
    print(json.dumps({"written": written, "seconds": seconds, "baseline_mb": baseline, "peak_mb": _rss_mb()}))


def _size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return total / 1e6


def measure(name: str, file_names: list[str], cells: Path, manifest: Path) -> dict:
    folder = CACHE / "out" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = [sys.executable, __file__, "--child", name, str(cells), str(manifest), str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"format": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "format": name,
        "written": figures["written"],
        "seconds": round(figures["seconds"], 1),
        "size_mb": round(sum(_size_mb(folder / f) for f in file_names), 1),
        "peak_mb": round(figures["peak_mb"]),
        "peak_extra_mb": round(figures["peak_mb"] - figures["baseline_mb"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=300, help="nuclei per image")
    parser.add_argument(
        "--formats", default="", help=f"format names, comma-separated, '{ALL}' for write_batch_exports; default: each, then {ALL}"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], *map(Path, args.child[1:]))
        return
    from wsi_assets.batches.exports import BATCH_EXPORT_FORMATS, BATCH_EXPORTS

    wanted = set(args.formats.split(",")) if args.formats else {ALL, *(e.name for e in BATCH_EXPORT_FORMATS)}
    cells, manifest = stored_batch(args.images, args.cells)
    rows = [measure(e.name, [e.file_name], cells, manifest) for e in BATCH_EXPORT_FORMATS if e.name in wanted]
    if ALL in wanted:
        rows.append(measure(ALL, list(BATCH_EXPORTS), cells, manifest))
    print(f"{args.images:,} images x {args.cells} nuclei")
    print("| format | entries written | seconds | size MB | peak RSS MB | peak extra MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "error" in row:
            print(f"| {row['format']} | failed: {row['error']} | | | | |")
        else:
            written = row["written"]  # all: the entries of each format
            written = ", ".join(f"{k} {v:,}" for k, v in written.items()) if isinstance(written, dict) else f"{written:,}"
            print(
                f"| {row['format']} | {written} | {row['seconds']} | {row['size_mb']} | {row['peak_mb']} | {row['peak_extra_mb']} |"
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
