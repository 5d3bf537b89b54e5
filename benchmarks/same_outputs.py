"""Does this checkout produce the same outputs as an earlier commit? (for refactors)

    python benchmarks/same_outputs.py REV [--slide PATH]

Runs process_slide on the slide (default: ../shared/data/slides/CMU-1-Small-Region.svs) with
the code of commit REV (a temporary git worktree) and with this checkout, each in its own
process with this virtual environment, then compares every output file: byte for byte, the
stored cell table by content, the Zarr export array by array. Paths, export times and run
times (EXPECTED_TO_DIFFER, report.html's REPORT_ROWS_MAY_DIFFER) may differ, and settings keys added since (unset); files and JSON keys only
the new side has are listed as additions; any change to what the old side wrote is reported
DIFFERENT and exits 1.
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
    "slide_metadata.json": {"path"},
    "cells.zarr.zip": {"exported_at", "run_id", "slide_path"},
    "summary.json": {"seconds", "mm2_per_s", "exported_at", "run_id"},
    "slide_file.json": {"path", "inode", "mtime_ns"},
}

# The GeoJSON's provenance block: the run's own id and times.
GEOJSON_PROVENANCE_MAY_DIFFER = {"exported_at", "run_id", "slide_path"}

# report.html's key-figure rows that carry the run's own times and id.
REPORT_ROWS_MAY_DIFFER = ("Segmentation time", "Run time", "Result set")

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
    subprocess.run(
        [sys.executable, "-c", RUN, str(root), str(slide)],
        cwd=code_dir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return root / "lab" / "outputs" / "main" / slide.stem


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _settings(value):
    # A settings key added since (its value unset) is no change in behaviour.
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def _differing(da: dict, db: dict) -> set:
    """Keys the old side has whose values differ (`settings` compared without keys left unset); keys only the new side has are additions."""
    return {
        k
        for k in da.keys()
        if (_settings(da.get(k)) if k == "settings" else da.get(k)) != (_settings(db.get(k)) if k == "settings" else db.get(k))
    }


def _report_without_run_rows(path: Path) -> str:
    import re

    html = path.read_text()
    for label in REPORT_ROWS_MAY_DIFFER:
        html = re.sub(rf"(<tr><th>{re.escape(label)}</th><td>)[^<]*(</td></tr>)", r"\1…\2", html)
    return html


def _added(da: dict, db: dict) -> str:
    added = sorted(db.keys() - da.keys())
    return f" (added {added})" if added else ""


def compare(old: Path, new: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import zarr

    report = {}
    names = sorted(
        {p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()}
        | {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()}
    )
    for name in names:
        a, b = old / name, new / name
        if not (a.exists() and b.exists()):
            report[name] = "only in " + ("old" if a.exists() else "new")
        elif name.endswith(".parquet"):
            report[name] = "same" if pq.read_table(a).equals(pq.read_table(b)) else "DIFFERENT"
        elif name.endswith(".zarr.zip"):
            groups = [zarr.open_group(zarr.storage.ZipStore(str(p), mode="r"), mode="r") for p in (a, b)]
            arrays = all(np.array_equal(groups[0][k][:], groups[1][k][:]) for k in groups[0].array_keys())
            attrs = _differing(dict(groups[0].attrs), dict(groups[1].attrs))
            report[name] = "same" if arrays and attrs <= EXPECTED_TO_DIFFER[name] else f"DIFFERENT (attrs {sorted(attrs)})"
        elif name.endswith(".geojson") and digest(a) != digest(b):
            da, db = json.loads(a.read_text()), json.loads(b.read_text())
            features = da.pop("features") == db.pop("features")
            keys = _differing(da.get("provenance", {}), db.get("provenance", {})) | _differing(
                {k: v for k, v in da.items() if k != "provenance"}, {k: v for k, v in db.items() if k != "provenance"}
            )
            report[name] = (
                "same"
                if features and keys <= GEOJSON_PROVENANCE_MAY_DIFFER
                else f"DIFFERENT (features {'same' if features else 'differ'}, {sorted(keys)})"
            )
        elif name.endswith(".json") and digest(a) != digest(b):
            da, db = json.loads(a.read_text()), json.loads(b.read_text())
            keys = _differing(da, db)
            report[name] = (
                "same" + _added(da, db)
                if keys <= EXPECTED_TO_DIFFER.get(Path(name).name, set())
                else f"DIFFERENT ({sorted(keys)})"
            )
        elif name.endswith("report.html") and digest(a) != digest(b):
            same = _report_without_run_rows(a) == _report_without_run_rows(b)
            report[name] = "same (run times and id differ)" if same else "DIFFERENT"
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
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(work / "old_code"), args.rev], check=True
        )
        try:
            old = run_process_slide(work / "old_code", work / "old", args.slide.resolve())
            new = run_process_slide(REPO, work / "new", args.slide.resolve())
            report = compare(old, new)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "old_code")], check=False)
    print(json.dumps(report, indent=2))
    # Files and keys only the new side has are additions, listed above; a change to anything the old side wrote fails.
    sys.exit(0 if all(v.startswith("same") or v == "only in new" for v in report.values()) else 1)


if __name__ == "__main__":
    main()
