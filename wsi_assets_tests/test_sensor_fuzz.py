"""Random upload trees in which one user plants every hostile kind at once (deep JSON, fields over
the csv limit, big slides.csv, TIFFs of thousands of pages, decompression bombs, sparse huge files,
FIFOs, link loops, odd and case-colliding names, a flood of files, a damaged batch result): every
tick of the upload and review sensors returns, and the other user's clean upload is requested
within two ticks."""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsi_assets.slides.synthetic  # noqa: F401 - imported before the env guard's baseline (cv2 sets LD_LIBRARY_PATH)
from wsi_assets.testing import hostile_files
from wsi_assets_tests.test_sensor_bounds import instance, tick  # noqa: F401 - the module's instance fixture

TICK_BOUND_S = 20.0  # the tick's own deadline is 10 s; the rest is slack for a loaded CI machine
ODD_NAMES = ["two\nlines", "-rf", "résumé", "n" * 120, "a b", "x|y`z"]


@functools.cache
def gzip_bomb_bytes() -> bytes:
    return hostile_files.gzip_bomb(Path(tempfile.mkdtemp()) / "bomb.gz", 64).read_bytes()


def plant(root: Path, user: str, kind: str, area: str, branch: str, suffix: str, index: int, slide: Path) -> None:
    folder = root / user / area / branch if branch else root / user / area
    folder.mkdir(parents=True, exist_ok=True)
    name = f"h{index}"
    if kind == "deep_json":
        hostile_files.deep_json(folder / f"{name}.geojson")
    elif kind == "csv_field":
        hostile_files.huge_csv_field(folder / "slides.csv")
    elif kind == "big_csv":
        hostile_files.big_slides_csv(folder / "slides.csv", 2.0)
    elif kind == "many_pages":
        hostile_files.many_pages_tiff(folder / f"{name}{suffix}", 3000)
    elif kind == "tiff_bomb":
        hostile_files.tiff_bomb(folder / f"{name}{suffix}")
    elif kind == "sparse_huge":
        hostile_files.sparse_file(folder / f"{name}{suffix}", 3 * 2**30)
    elif kind == "gzip_bomb":
        (folder / f"{name}{suffix}").write_bytes(gzip_bomb_bytes())
    elif kind == "fifo":
        hostile_files.fifo(folder / f"{name}{suffix}")
    elif kind == "loop":
        hostile_files.symlink_loop(folder / f"{name}{suffix}")
    elif kind == "odd_name":
        shutil.copyfile(slide, folder / f"{ODD_NAMES[index % len(ODD_NAMES)]}{suffix}")
    elif kind == "case_pair":
        shutil.copyfile(slide, folder / f"Case{index}.svs")
        shutil.copyfile(slide, folder / f"case{index}.svs")
    elif kind == "flood":
        for i in range(600):
            (folder / f"f{index}_{i:03d}.svs").write_bytes(os.urandom(16))
    elif kind == "damaged_batch":  # a batch whose published rejected.json is nested past the recursion limit
        (root / user / "inputs" / (branch or "main") / f"batch{index}").mkdir(parents=True, exist_ok=True)
        hostile_files.deep_json(root / user / "outputs" / (branch or "main") / f"batch{index}" / "rejected.json")


hostile = st.tuples(
    st.sampled_from(
        [
            "deep_json",
            "csv_field",
            "big_csv",
            "many_pages",
            "tiff_bomb",
            "sparse_huge",
            "gzip_bomb",
            "fifo",
            "loop",
            "odd_name",
            "case_pair",
            "flood",
            "damaged_batch",
        ]
    ),
    st.sampled_from(["inputs", "reviews"]),
    st.sampled_from(["", "main", "cohort"]),
    st.sampled_from([".svs", ".tif", ".ome.tif", ".geojson", ".ndpi", ".vms"]),
)


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plants=st.lists(hostile, min_size=1, max_size=8), clean_user=st.sampled_from(["alice", "zed"]), clean_review=st.booleans())
def test_every_tick_returns_and_the_other_users_upload_is_requested_within_two_ticks(
    small_slide,
    instance,  # noqa: F811 - the fixture imported above
    plants,
    clean_user,
    clean_review,
):
    from wsi_assets.defs.reviews import review_sensor
    from wsi_assets.defs.sensors import upload_sensor

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "user_files"
        for index, (kind, area, branch, suffix) in enumerate(plants):
            plant(root, "mallory", kind, area, branch, suffix, index, small_slide)
        (root / clean_user / "inputs/main").mkdir(parents=True)
        shutil.copyfile(small_slide, root / clean_user / "inputs/main/good.svs")
        if clean_review:
            (root / clean_user / "reviews/main").mkdir(parents=True)
            (root / clean_user / "reviews/main/slides.csv").write_text("slide,annotator,adequacy\ngood,dr_a,adequate\n")

        requested, cursors = [], {upload_sensor.name: None, review_sensor.name: None}
        for _ in range(2):
            for sensor in (upload_sensor, review_sensor):
                started = time.perf_counter()
                result = tick(sensor, instance, root, cursors[sensor.name])
                assert time.perf_counter() - started < TICK_BOUND_S, (
                    f"{sensor.name} tick took {time.perf_counter() - started:.1f} s"
                )
                cursors[sensor.name] = result.cursor
                requested += [r.partition_key for r in result.run_requests]
        assert f"{clean_user}/main/good" in requested, plants
        if clean_review:
            assert f"{clean_user}/main" in requested, plants
        clean_status = json.loads((root / clean_user / "outputs/upload_status.json").read_text())["files"]
        assert [f["state"] for f in clean_status if f["state"] == "skipped"] == [], clean_status
