"""How long one upload_sensor / review_sensor tick takes while one user's hostile file is present,
and whether another user's slide is still requested within two ticks.

    python benchmarks/sensor_tick.py [--case big_review] [--folder /tmp/sensor_tick]

Cases: big_review (140 MB, 700,000 cells), one_polygon (one cell of 10^6 vertices, 40 MB),
big_csv (a 9.9 MB slides.csv), deep_json (nested past the recursion limit), csv_field (a field
over the csv module's limit), many_pages (a TIFF of 100,000 one-pixel pages). The sensors are
called as plain functions on an ephemeral instance (the daemon adds its own overhead on top).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from wsi_assets.testing import hostile_files

CASES = {
    "big_review": lambda root: hostile_files.big_review(root / "alice/reviews/main/mine.geojson", 700_000),
    "one_polygon": lambda root: hostile_files.one_polygon_review(root / "alice/reviews/main/mine.geojson", 1_000_000),
    "big_csv": lambda root: hostile_files.big_slides_csv(root / "alice/reviews/main/slides.csv", 9.9),
    "deep_json": lambda root: hostile_files.deep_json(root / "alice/reviews/main/mine.geojson"),
    "csv_field": lambda root: hostile_files.huge_csv_field(root / "alice/reviews/main/slides.csv"),
    "many_pages": lambda root: hostile_files.many_pages_tiff(root / "alice/inputs/main/pages.tif", 100_000),
}


def tick(sensor, instance, root: Path, cursor: str | None):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource

    context = build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor)
    started = time.perf_counter()
    try:
        result = sensor(context)
    except Exception as error:  # noqa: BLE001 - the figure to report is that the tick failed
        return None, time.perf_counter() - started, f"{type(error).__name__}: {str(error)[:120]}"
    return result, time.perf_counter() - started, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/sensor_tick"))
    args = parser.parse_args()
    from dagster import DagsterInstance

    from wsi_assets.defs.reviews import review_sensor
    from wsi_assets.defs.sensors import upload_sensor
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    slide = args.folder / "slide.svs"
    if not slide.exists():
        args.folder.mkdir(parents=True, exist_ok=True)
        write_synthetic_slide(slide, SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=1))
    for case in args.case or sorted(CASES):
        root = args.folder / case
        shutil.rmtree(root, ignore_errors=True)
        for user in ("alice", "bob"):
            (root / user / "inputs/main").mkdir(parents=True)
        shutil.copyfile(slide, root / "alice/inputs/main/mine.svs")
        made = time.perf_counter()
        hostile = CASES[case](root)
        made = time.perf_counter() - made
        shutil.copyfile(slide, root / "bob/inputs/main/good.svs")
        with DagsterInstance.ephemeral() as instance:
            for sensor in (upload_sensor, review_sensor):
                cursor, requested, times, errors = None, None, [], []
                for number in (1, 2):
                    result, seconds, error = tick(sensor, instance, root, cursor)
                    times.append(seconds)
                    if error:
                        errors.append(error)
                        continue
                    cursor = result.cursor
                    if requested is None and "bob/main/good" in [r.partition_key for r in result.run_requests]:
                        requested = number
                shown = ", ".join(f"{s:.2f}" for s in times)
                bob = "" if sensor is review_sensor else f"; bob's slide requested at tick {requested}"
                print(
                    f"{case:12s} {hostile.stat().st_size / 1e6:7.1f} MB (made in {made:.0f} s)  {sensor.name}: ticks {shown} s{bob}"
                    + (f"; FAILED: {errors[0]}" if errors else "")
                )


if __name__ == "__main__":
    main()
