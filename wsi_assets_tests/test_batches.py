"""Batches of small images: registered by batch_sensor, processed by process_batch, exported, and only what changed is redone."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from wsi_assets.batches.manifest import load_manifest
from wsi_assets.batches.scan import BatchCursor, scan_batches

# One batch of a few hundred images is segmented once (~1 min on the 2-core machine) and its tests share it.
pytestmark = pytest.mark.slow

USER, BRANCH, BATCH = "batchlab", "main", "fields"
KEY = f"{USER}/{BRANCH}/{BATCH}"
IMAGES = 300
SIDE = 256
# Rejected entries and the words their reason must hold.
REJECTED = {
    "notes.txt": "not an image of a batch",
    "broken.png": "cannot be read as an image",
    "bad name.png": "may only use letters",
    "empty.png": "empty file",
    "slide.tif": "a whole-slide image",
    "nested/": "folders inside a batch are not read",
}


def _field(index: int, seed: int = 3) -> np.ndarray:
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, render_region

    spec = SyntheticSlideSpec(width=12_000, height=12_000, mpp=0.5, seed=seed, tissue_fraction=0.9)
    col, row = divmod(index, 12)
    return render_region(spec, 1, 2_000 + col * SIDE, 2_000 + row * SIDE, SIDE, SIDE)


def _save(folder: Path, index: int, seed: int = 3) -> str:
    """Image `index` as TIFF or JPEG with a stated resolution (0.5 µm/px), or as PNG without one."""
    rgb = Image.fromarray(_field(index, seed))
    if index % 4 == 0:
        name = f"field{index:04d}.tif"
        rgb.save(folder / name, dpi=(50_800, 50_800))
    elif index % 4 == 1:
        name = f"field{index:04d}.jpg"
        rgb.save(folder / name, dpi=(50_800, 50_800), quality=90)
    else:
        name = f"field{index:04d}.png"
        rgb.save(folder / name)
    return name


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _tick(instance, root: Path, cursor: str | None):
    from dagster import build_sensor_context

    from wsi_assets.defs.batches import batch_sensor
    from wsi_assets.defs.resources import UserFilesResource

    context = build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor)
    return batch_sensor(context)


def _ticks_until_run(instance, root: Path, cursor: str | None, most: int = 4):
    """Sensor ticks until one requests a run: (its run request, the cursor, ticks taken, partitions added)."""
    added = []
    for tick in range(1, most + 1):
        result = _tick(instance, root, cursor)
        cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            added += list(request.partition_keys)
            instance.add_dynamic_partitions("batches", list(request.partition_keys))
        if result.run_requests:
            return result.run_requests, cursor, tick, added
    raise AssertionError(f"no run requested in {most} ticks")


def _run(instance, key: str):
    from wsi_assets.definitions import defs

    result = defs.resolve_job_def("process_batch").execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} not materialized")


@pytest.fixture(scope="module")
def first_run(user_files_root, dagster_instance, small_slide):
    """A batch of IMAGES fields plus rejected files, uploaded, registered by the sensor and processed once."""
    folder = user_files_root / USER / "inputs" / BRANCH / BATCH
    folder.mkdir(parents=True)
    names = [_save(folder, i) for i in range(IMAGES)]
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    shutil.copyfile(folder / names[2], folder / "bad name.png")
    (folder / "empty.png").write_bytes(b"")
    shutil.copyfile(small_slide, folder / "slide.tif")
    (folder / "nested").mkdir()
    inputs_before = _hashes(folder)
    requests, cursor, ticks, added = _ticks_until_run(dagster_instance, user_files_root, None)
    result = _run(dagster_instance, requests[0].partition_key)
    outputs = user_files_root / USER / "outputs" / BRANCH / BATCH
    return {
        "folder": folder,
        "names": names,
        "requests": requests,
        "cursor": cursor,
        "ticks": ticks,
        "added": added,
        "result": result,
        "outputs": outputs,
        "inputs_before": inputs_before,
        "cells": pq.read_table(outputs / "cells.parquet"),
    }


def test_sensor_registers_the_batch_and_requests_one_run(first_run):
    assert first_run["added"] == [KEY]
    assert first_run["ticks"] == 2, "one look to see the folder, a second to find it unchanged"
    (request,) = first_run["requests"]
    assert request.partition_key == KEY and request.job_name == "process_batch"


def test_batch_runs_queue_in_their_branch(first_run):
    from wsi_assets.queue.tags import slide_queue_tags

    assert slide_queue_tags({"dagster/partition": KEY}) == {"wsi/user": USER, "wsi/branch": f"{USER}/{BRANCH}"}


def test_manifest_lists_images_with_their_resolution_and_rejects_with_reasons(first_run):
    manifest = load_manifest(first_run["outputs"] / "manifest.json")
    assert sorted(i.name for i in manifest.images) == sorted(first_run["names"])
    assert {(i.width, i.height) for i in manifest.images} == {(SIDE, SIDE)}
    stated = [i for i in manifest.images if i.name.endswith((".tif", ".jpg"))]
    assert stated and all(i.mpp == pytest.approx(0.5) and i.mpp_source == "file metadata" and not i.mpp_inferred for i in stated)
    unstated = [i for i in manifest.images if i.name.endswith(".png")]
    assert all(i.mpp_inferred and i.mpp_source in ("nucleus-size estimate", "default") for i in unstated)
    estimated = [i.mpp for i in unstated if i.mpp_source == "nucleus-size estimate"]
    assert len(estimated) > len(unstated) // 2 and 0.3 < float(np.median(estimated)) < 0.7
    assert len(set(estimated)) == 1, "estimated images share the batch's one µm/px"
    rejected = dict(manifest.rejected)
    assert set(rejected) == set(REJECTED)
    for name, words in REJECTED.items():
        assert words in rejected[name] and "\n" not in rejected[name], (name, rejected[name])
    assert _metadata(first_run["result"], "batch_manifest")["rejected"] == len(REJECTED)


def test_inputs_are_never_changed(first_run):
    assert _hashes(first_run["folder"]) == first_run["inputs_before"]


def test_one_cell_table_with_an_image_column(first_run):
    cells = first_run["cells"]
    per_image = dict(zip(*np.unique(cells.column("image").to_numpy(zero_copy_only=False), return_counts=True)))
    assert set(per_image) <= set(first_run["names"]) and len(per_image) > IMAGES * 0.8
    # A 128 µm field of H&E-like tissue holds tens of nuclei, not a handful and not thousands.
    assert 20 < float(np.median(list(per_image.values()))) < 200
    assert set(cells.column("class").to_pylist()) <= {"inflammatory", "epithelial", "spindle", "other"}
    meta = _metadata(first_run["result"], "batch_cells")
    assert meta["cells"] == cells.num_rows and meta["segmented_images"] == IMAGES
    assert "data:image/jpeg;base64," in meta["thumbnails"]


def test_progress_is_logged_every_tenth_with_rate_and_eta(first_run, dagster_instance):
    records = dagster_instance.all_logs(first_run["result"].run_id)
    lines = [r.user_message for r in records if r.step_key == "batch_cells" and "batch segmentation" in r.user_message]
    assert len(lines) == 10, lines
    assert f"{IMAGES}/{IMAGES} images, {first_run['cells'].num_rows} nuclei" in lines[-1] and "100%" in lines[-1]
    assert all("images/s" in line and "ETA" in line for line in lines)


def test_exports_read_back_with_real_readers(first_run):
    from openpyxl import load_workbook
    from pycocotools.coco import COCO

    outputs, cells = first_run["outputs"], first_run["cells"]
    counts = dict(zip(*np.unique(cells.column("image").to_numpy(zero_copy_only=False), return_counts=True)))
    coco = COCO(str(outputs / "coco.json"))
    assert len(coco.getImgIds()) == IMAGES and len(coco.getAnnIds()) == cells.num_rows
    image = coco.loadImgs(coco.getImgIds())[5]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
    # file_name is the image's copy inside the published set (issue 30), not the input.
    assert image["file_name"].startswith("yolo/images/") and (outputs / image["file_name"]).is_file()
    assert len(annotations) == counts.get(Path(image["file_name"]).name, 0)
    if annotations:
        mask = coco.annToMask(annotations[0])
        assert mask.shape == (SIDE, SIDE) and 0 < mask.sum() < SIDE * SIDE / 10

    rows = list(load_workbook(outputs / "summary.xlsx", read_only=True)["images"].iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    assert len(body) == IMAGES, "one row per image"
    by_image = {row[header.index("image")]: row for row in body}
    for name in first_run["names"][:10]:
        row = by_image[name]
        assert row[header.index("cells")] == counts.get(name, 0)
        assert (
            sum(row[header.index(f"{c}_count")] for c in ("inflammatory", "epithelial", "spindle", "other"))
            == row[header.index("cells")]
        )

    labels = sorted((outputs / "yolo" / "labels").glob("*.txt"))
    assert len(labels) == IMAGES
    for path in labels[:10]:
        lines = path.read_text().splitlines()
        name = next(n for n in first_run["names"] if Path(n).stem == path.stem)
        assert len(lines) == counts.get(name, 0)
        for line in lines[:5]:
            values = [float(v) for v in line.split()[1:]]
            assert int(line.split()[0]) in range(4) and len(values) >= 6 and all(0 <= v <= 1 for v in values)

    summary = json.loads((outputs / "summary.json").read_text())
    assert summary["images"] == IMAGES and summary["cells"] == cells.num_rows
    assert {r["file"] for r in summary["rejected"]} == set(REJECTED)


# Before the test that adds images: the report is read from the first run's published set.
def test_report_shows_the_grid_and_every_images_counts(first_run):
    outputs = first_run["outputs"]
    report = (outputs / "report.html").read_text()
    summary = json.loads((outputs / "summary.json").read_text())
    assert report.count('<img src="data:image/jpeg;base64,') == 1, "the thumbnail grid, embedded"
    assert len(summary["per_image"]) == IMAGES
    for row in summary["per_image"]:
        start = report.index(f'<tr><td>{row["image"]}</td><td class="nowrap">{row["width"]} × {row["height"]}</td>')
        assert f'<td class="number">{row["cells"]:,}</td>' in report[start : report.index("</tr>", start)], row["image"]
    assert "bad name.png" in report and f"{summary['cells']:,}" in report
    assert _metadata(first_run["result"], "batch_exports")["report"] == (outputs / "report.html").absolute().as_uri()


def test_added_and_changed_images_alone_are_segmented_again(first_run, user_files_root, dagster_instance):
    folder, before = first_run["folder"], first_run["cells"]
    # An unchanged folder is never requested again.
    assert _tick(dagster_instance, user_files_root, first_run["cursor"]).run_requests == []
    added = [_save(folder, IMAGES + i) for i in range(5)]
    changed = first_run["names"][3]
    _save(folder, 3, seed=99)  # the same name, other pixels
    requests, _, _, _ = _ticks_until_run(dagster_instance, user_files_root, first_run["cursor"])
    assert requests[0].run_key != first_run["requests"][0].run_key
    result = _run(dagster_instance, KEY)
    manifest = load_manifest(first_run["outputs"] / "manifest.json")
    changes = {i.name: i.change for i in manifest.images}
    assert sorted(n for n, c in changes.items() if c == "new") == sorted(added)
    assert [n for n, c in changes.items() if c == "changed"] == [changed]
    assert _metadata(result, "batch_cells")["segmented_images"] == 6
    estimated = {i.mpp for i in manifest.images if i.mpp_source == "nucleus-size estimate"}
    assert len(estimated) == 1, f"added images take the batch's µm/px: {estimated}"
    after = pq.read_table(first_run["outputs"] / "cells.parquet")
    kept = first_run["names"][10]

    def of(table, name):
        return table.filter(pc.equal(table.column("image"), name))

    assert of(after, kept).num_rows > 0 and of(after, kept).equals(of(before, kept)), "unchanged cells are kept"
    assert of(after, changed).column("centroid_x").to_pylist() != of(before, changed).column("centroid_x").to_pylist()
    assert len(json.loads((first_run["outputs"] / "summary.json").read_text())["per_image"]) == IMAGES + 5


def test_each_tick_stats_a_bounded_number_of_files(tmp_path):
    folder = tmp_path / "u" / "inputs" / "main" / "many"
    folder.mkdir(parents=True)
    for i in range(250):
        (folder / f"f{i:04d}.png").write_bytes(b"x")
    cursor, ticks, requested = BatchCursor(), 0, []
    while not requested:
        ticks += 1
        scan = scan_batches(tmp_path, cursor, max_stats=100)
        assert scan.stats <= 100
        cursor, requested = scan.cursor, scan.requests
        assert len(cursor.serialize()) < 300, "the cursor stays small"
    assert ticks == 6, "two whole looks of three ticks each"
    first_fingerprint = requested[0][1]
    (folder / "f0001.png").write_bytes(b"changed")
    fingerprints = []
    for _ in range(6):
        scan = scan_batches(tmp_path, cursor, max_stats=100)
        cursor, fingerprints = scan.cursor, fingerprints + [f for _, f in scan.requests]
    assert len(fingerprints) == 1 and fingerprints[0] != first_fingerprint, "a changed file gives one new request"


def test_rejected_files_are_listed_in_the_upload_status(first_run, user_files_root, dagster_instance, tmp_path):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    # The user's tree alone (links kept), so the upload sensor writes no status into other tests' users.
    root = tmp_path / "user_files"
    shutil.copytree(user_files_root / USER, root / USER, symlinks=True)
    context = build_sensor_context(instance=dagster_instance, resources={"user_files": UserFilesResource(root=str(root))})
    result = upload_sensor(context)
    assert result.run_requests == [], "batch images are never requested as slides"
    status = json.loads((root / USER / "outputs" / "upload_status.json").read_text())
    skipped = {f["path"]: f["why"] for f in status["files"] if f["state"] == "skipped"}
    prefix = f"{USER}/inputs/{BRANCH}/{BATCH}/"
    assert set(skipped) == {prefix + name for name in REJECTED}
    for name, words in REJECTED.items():
        assert words in skipped[prefix + name]
    (event,) = [e for e in result.asset_events if e.partition == USER]
    assert any("a whole-slide image" in record.data["why"] for record in event.metadata["files_table"].records)


def test_a_batch_named_like_a_slide_of_its_branch_is_refused(tmp_path):
    branch = tmp_path / "u" / "inputs" / "main"
    (branch / "cores").mkdir(parents=True)
    (branch / "cores" / "a.png").write_bytes(b"x")
    assert [f.key.partition_key for f in scan_batches(tmp_path, BatchCursor()).folders] == ["u/main/cores"]
    (branch / "cores.svs").write_bytes(b"x")
    scan = scan_batches(tmp_path, BatchCursor())
    assert scan.folders == [] and "both would be published at outputs/main/cores/" in dict(scan.refused)["u/inputs/main/cores/"]
