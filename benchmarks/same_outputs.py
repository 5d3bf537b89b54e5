"""Does this checkout produce the same outputs as an earlier commit? (for refactors)

    python benchmarks/same_outputs.py REV [--slide PATH]

Runs process_slide on the slide (default: ../shared/data/slides/CMU-1-Small-Region.svs) with
the code of commit REV (a temporary git worktree) and with this checkout, each in its own
process with this virtual environment, then compares every output file: byte for byte, the
stored cell table by content, the Zarr export array by array. Paths, export times and run
times (EXPECTED_TO_DIFFER) may differ; anything else is reported DIFFERENT and exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SLIDE = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
# Paths of the two runs, export times and run times.
# slide_file.json records the input copy each side ran on (its path, inode and modification time).
EXPECTED_TO_DIFFER = {
    "slide_metadata.json": {"path"}, "cells.zarr.zip": {"exported_at", "run_id", "slide_path"}, "summary.json": {"seconds", "mm2_per_s"},
    "slide_file.json": {"path", "inode", "mtime_ns"},
}

RUN = """
import os, shutil, sys
from pathlib import Path
root, slide = Path(sys.argv[1]), Path(sys.argv[2])
os.environ["WSI_USER_FILES"] = str(root)
(root / "lab/inputs/main").mkdir(parents=True, exist_ok=True)
shutil.copyfile(slide, root / "lab/inputs/main" / slide.name)
from dagster import DagsterInstance
from wsi_assets.definitions import defs
key = "lab/main/" + slide.stem
with DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("slides", [key])
    result = defs.resolve_job_def("process_slide").execute_in_process(instance=instance, partition_key=key)
    assert result.success
"""


def run_process_slide(code_dir: Path, root: Path, slide: Path) -> Path:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(code_dir), "HOME": str(root)}
    subprocess.run([sys.executable, "-c", RUN, str(root), str(slide)], cwd=code_dir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return root / "lab" / "outputs" / "main" / slide.stem


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(old: Path, new: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import zarr

    report = {}
    names = sorted({p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()} | {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()})
    for name in names:
        a, b = old / name, new / name
        if not (a.exists() and b.exists()):
            report[name] = "only in " + ("old" if a.exists() else "new")
        elif name.endswith(".parquet"):
            report[name] = "same" if pq.read_table(a).equals(pq.read_table(b)) else "DIFFERENT"
        elif name.endswith(".zarr.zip"):
            groups = [zarr.open_group(zarr.storage.ZipStore(str(p), mode="r"), mode="r") for p in (a, b)]
            arrays = all(np.array_equal(groups[0][k][:], groups[1][k][:]) for k in groups[0].array_keys())
            attrs = {k for k in dict(groups[0].attrs) if groups[0].attrs[k] != groups[1].attrs.get(k)}
            report[name] = "same" if arrays and attrs <= EXPECTED_TO_DIFFER[name] else f"DIFFERENT (attrs {sorted(attrs)})"
        elif name.endswith(".json") and digest(a) != digest(b):
            da, db = json.loads(a.read_text()), json.loads(b.read_text())
            keys = {k for k in da.keys() | db.keys() if da.get(k) != db.get(k)}
            report[name] = "same" if keys <= EXPECTED_TO_DIFFER.get(Path(name).name, set()) else f"DIFFERENT ({sorted(keys)})"
        else:
            report[name] = "same" if digest(a) == digest(b) else "DIFFERENT"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit, e.g. HEAD~3")
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wsi_same_") as work:
        work = Path(work)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(work / "old_code"), args.rev], check=True)
        try:
            old = run_process_slide(work / "old_code", work / "old", args.slide.resolve())
            new = run_process_slide(REPO, work / "new", args.slide.resolve())
            report = compare(old, new)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "old_code")], check=False)
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(v == "same" for v in report.values()) else 1)


if __name__ == "__main__":
    main()
