"""Wall time, file size and peak extra memory of each export format on ~1.17 M synthetic nuclei.

    python benchmarks/export_benchmark.py                      # csv, zarr, geoparquet, geojson
    python benchmarks/export_benchmark.py --formats all        # every registered format
    python benchmarks/export_benchmark.py --formats cells_geojson --cells-per-tile-side 10

No segmentation: the stored cell table is 16-vertex nuclei on a grid, written tile by tile with
CellStoreWriter and cached under /tmp. Each format writes in a fresh subprocess, so its peak RSS
(ru_maxrss) minus the same process's RSS after its imports is the export's own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CACHE = Path("/tmp/wsi_export_benchmark")
DEFAULT_FORMATS = ("cells_csv", "cells_zarr", "cells_geoparquet", "cells_geojson")
MEMORY_LIMIT_MB = 1024
PROVENANCE = {
    "slide": "bench/main/synthetic",
    "slide_file": "synthetic.svs",
    "mpp": 0.25,
    "mpp_source": "slide",
    "mpp_inferred": False,
    "segmenter": "synthetic",
    "segmenter_version": "0",
    "wsi_assets_version": "bench",
    "settings": {"cell_expansion_um": 0},
}


def stored_table(tiles: int, per_tile_side: int) -> Path:
    from wsi_assets.testing.synthetic_cells import write_grid_store

    path = CACHE / f"cells_{tiles}x{tiles}_{per_tile_side}.parquet"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        started = time.perf_counter()
        count = write_grid_store(partial, tiles, tiles, per_tile_side)
        partial.rename(path)
        print(f"built {count} nuclei in {time.perf_counter() - started:.1f} s: {path}", file=sys.stderr)
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(asset_name: str, cells: Path, destination: Path) -> None:
    """Runs in the subprocess: one format's write, measured against the RSS after the imports."""
    import geopandas  # noqa: F401 - imported by nothing here, but loads GEOS/pyarrow as a reader's would
    import pyarrow.parquet  # noqa: F401
    import shapely  # noqa: F401

    from wsi_assets.cells.exports import EXPORT_FORMATS

    export = next(e for e in EXPORT_FORMATS if e.asset_name == asset_name)
    baseline = _rss_mb()
    started = time.perf_counter()
    written = export.write(cells, destination, dict(PROVENANCE, slide_path=None))
    seconds = time.perf_counter() - started
    print(json.dumps({"cells": written, "seconds": seconds, "baseline_mb": baseline, "peak_mb": _rss_mb()}))


def _size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return total / 1e6


def measure(asset_name: str, file_name: str, cells: Path) -> dict:
    destination = CACHE / "out" / file_name
    destination.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", asset_name, str(cells), str(destination)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"format": asset_name, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    row = {
        "format": asset_name,
        "file": file_name,
        "cells": figures["cells"],
        "seconds": round(figures["seconds"], 1),
        "s_per_million": round(figures["seconds"] / figures["cells"] * 1e6, 1),
        "size_mb": round(_size_mb(destination), 1),
        "peak_extra_mb": round(figures["peak_mb"] - figures["baseline_mb"], 1),
    }
    row["memory_ok"] = row["peak_extra_mb"] <= MEMORY_LIMIT_MB
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="asset names, comma-separated, or 'all'")
    parser.add_argument("--tiles", type=int, default=36, help="tiles per side (36 x 36 x 30² = 1,166,400 nuclei)")
    parser.add_argument("--cells-per-tile-side", type=int, default=30)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    from wsi_assets.cells.exports import EXPORT_FORMATS

    wanted = None if args.formats == "all" else set(args.formats.split(","))
    cells = stored_table(args.tiles, args.cells_per_tile_side)
    rows = [measure(e.asset_name, e.file_name, cells) for e in EXPORT_FORMATS if wanted is None or e.asset_name in wanted]
    print("| format | file | cells | seconds | s per million | size MB | peak extra MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "error" in row:
            print(f"| {row['format']} | failed: {row['error']} | | | | | |")
        else:
            print(
                f"| {row['format']} | {row['file']} | {row['cells']:,} | {row['seconds']} | {row['s_per_million']} | {row['size_mb']} | {row['peak_extra_mb']} |"
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
