"""Stacks as uploads and through Dagster: the slide-vs-stack rule, the sensor, process_stack, stack_slice and the CLI."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from wsi_assets.queue.tags import slide_queue_tags
from wsi_assets.stacks.synthetic import as_array
from wsi_assets.uploads.scan import ScanCursor, scan_uploads
from wsi_assets.uploads.status import draft_statuses
from wsi_assets_tests import stack_files
from wsi_assets_tests.stack_files import SMALL


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def look_twice(root: Path):
    first = scan_uploads(root, ScanCursor())
    return first, scan_uploads(root, first.cursor)


def tiled_multipage(folder: Path) -> Path:
    """Tiled same-size pages: OpenSlide reads it (generic-tiff) and it holds planes like a stack."""
    path = folder / "tiled.tif"
    tifffile.imwrite(path, np.zeros((3, 512, 512), np.uint8), tile=(256, 256), photometric="minisblack", metadata=None)
    return path


def test_uploads_become_slides_or_stacks_by_the_rule(tmp_path, small_slide):
    main, exp = tmp_path / "alice" / "inputs" / "main", tmp_path / "alice" / "inputs" / "exp"
    stack_files.ome_stack(main)  # cells01.ome.tif
    stack_files.imagej_stack(exp)  # hyper.tif
    stack_files.plain_stack(main)  # plain.tif
    shutil.copyfile(small_slide, main / "slide01.tif")  # an Aperio slide with a .tif name
    stack_files.image_2d(main)
    stack_files.two_unnamed_axes(main)
    tiled_multipage(main)
    bob = tmp_path / "bob" / "inputs" / "main"
    stack_files.ome_stack(bob, name="x.ome.tif")
    shutil.copyfile(small_slide, bob / "x.svs")
    first, second = look_twice(tmp_path)
    kinds = {r.key.partition_key: r.kind for r in second.requests}
    assert kinds == {
        "alice/main/cells01": "stack",
        "alice/exp/hyper": "stack",
        "alice/main/plain": "stack",
        "alice/main/slide01": "slide",
    }
    reasons = {**dict(first.skipped), **dict(second.skipped)}
    assert "a 2D image" in reasons["alice/inputs/main/flat.tif"]
    assert "cannot tell which of its page axes" in reasons["alice/inputs/main/unnamed.tif"]
    assert reasons["alice/inputs/main/tiled.tif"].startswith(
        "ambiguous: OpenSlide reads it as a whole-slide image and it also holds several planes"
    )
    for name in ("x.ome.tif", "x.svs"):  # a slide and a stack may not share a name in one branch: one output folder each
        assert "ambiguous" in reasons[f"bob/inputs/main/{name}"]
    status = {s.path: s for s in draft_statuses(second, first.cursor)["alice"]}
    assert status["alice/inputs/main/tiled.tif"].state == "skipped" and "ambiguous" in status["alice/inputs/main/tiled.tif"].why


def test_stack_runs_queue_in_their_branch_with_slides():
    assert slide_queue_tags({"dagster/partition": "alice/main/cells01"}) == slide_queue_tags(
        {"dagster/partition": "alice/main/slide01"}
    )


def test_sensor_adds_stack_partitions_and_requests_process_stack(tmp_path, small_slide, dagster_instance):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    stack_files.ome_stack(tmp_path / "erin" / "inputs" / "main", name="cells07.ome.tif")
    shutil.copyfile(small_slide, tmp_path / "erin" / "inputs" / "main" / "slide07.svs")
    resources = {"user_files": UserFilesResource(root=str(tmp_path))}
    first = upload_sensor(build_sensor_context(instance=dagster_instance, resources=resources))
    second = upload_sensor(build_sensor_context(instance=dagster_instance, resources=resources, cursor=first.cursor))
    jobs = {r.partition_key: r.job_name for r in second.run_requests}
    assert jobs == {"erin/main/cells07": "process_stack", "erin/main/slide07": "process_slide"}
    added = {r.partitions_def_name: r.partition_keys for r in second.dynamic_partitions_requests}
    assert added["stacks"] == ["erin/main/cells07"] and added["slides"] == ["erin/main/slide07"]


# ------------------------------------------------------------------- through Dagster


# Planes go through the classical segmenter here: the fluorescence model's own tests are elsewhere,
# and on a CPU it costs seconds per plane (test_stack_nuclei covers what stack_nuclei writes).
CLASSICAL = {"resources": {"segmentation": {"config": {"model": "classical"}}}}


def run(instance, job: str, key: str, **kwargs):
    from wsi_assets.definitions import defs

    if job == "process_stack":
        kwargs.setdefault("run_config", CLASSICAL)
    instance.add_dynamic_partitions("stacks", [key])
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key, raise_on_error=False, **kwargs)


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message.strip()


def metadata_of(result, asset: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def processed_stack(user_files_root, dagster_instance):
    upload = stack_files.ome_stack(user_files_root / "sam" / "inputs" / "main")
    before = digest(upload)
    result = run(dagster_instance, "process_stack", "sam/main/cells01")
    assert result.success, failure_message(result)
    assert digest(upload) == before
    return result, user_files_root / "sam" / "outputs" / "main" / "cells01", upload


def test_process_stack_publishes_every_result(processed_stack):
    result, folder, _ = processed_stack
    names = {p.name for p in folder.iterdir()}
    assert {
        "stack_metadata.json",
        "stack.ome.zarr",
        "channel_stats.json",
        "channel_stats.csv",
        "channel_pca.json",
        "pca",
        "previews",
        "nuclei.parquet",
    } <= names
    assert folder.is_symlink()  # the published link to the run's whole set
    meta = metadata_of(result, "stack_metadata")
    assert meta["axes"] == "TCZYX" and meta["shape"] == dict(zip("TCZYX", SMALL.shape)) and meta["axes_source"] == "ome"
    assert meta["physical_size_um"] == {"z": 2.0, "y": 0.5, "x": 0.5} and meta["time_step_s"] == 30.0
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(c.check_name, c.passed) for c in checks] == [("stack_axes_named", True), ("stack_nuclear_channel", True)]
    assert ("DAPI", "all") in [(r.data["channel"], r.data["t"]) for r in metadata_of(result, "channel_stats")["table"].records]
    ratios = metadata_of(result, "channel_pca")["explained_variance_ratio"]
    assert len(ratios) == 3 and sum(ratios[:2]) > 0.999
    previews = {p.name for p in (folder / "previews").iterdir()}
    assert {"DAPI_mid-Z.png", "DAPI_MIP.png", "composite_MIP.png"} <= previews
    composite = cv2.imread(str(folder / "previews" / "composite_MIP.png"))
    assert max(composite.shape[:2]) <= 512 and composite.std() > 0


def test_stack_slice_job_and_cli_write_the_plane(processed_stack, dagster_instance, tmp_path, capsys):
    from wsi_assets.cli.stack import main

    _, folder, _ = processed_stack
    data = as_array(SMALL)
    config = {"ops": {"stack_slice_png": {"config": {"t": 1, "z": 4, "c": 2}}}}
    result = run(dagster_instance, "stack_slice", "sam/main/cells01", run_config=config)
    assert result.success, failure_message(result)
    np.testing.assert_array_equal(cv2.imread(str(folder / "slices" / "t1-z4-c2.png"), cv2.IMREAD_UNCHANGED), data[1, 2, 4])
    root = folder.parents[3]
    assert (
        main(
            ["slice", "sam/main/cells01", "--t", "0", "--z", "3", "--c", "1", "-o", str(tmp_path / "s.png"), "--root", str(root)]
        )
        == 0
    )
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "s.png"), cv2.IMREAD_UNCHANGED), data[0, 1, 3])


def test_out_of_range_slice_fails_with_one_line(processed_stack, dagster_instance, tmp_path, capsys):
    from wsi_assets.cli.stack import main

    _, folder, _ = processed_stack
    config = {"ops": {"stack_slice_png": {"config": {"t": 0, "z": 9, "c": 0}}}}
    result = run(dagster_instance, "stack_slice", "sam/main/cells01", run_config=config)
    assert not result.success
    assert failure_message(result) == "z=9 is out of range: this stack has Z=5 (z from 0 to 4)"
    assert not (folder / "slices" / "t0-z9-c0.png").exists()
    root = folder.parents[3]
    capsys.readouterr()  # the Dagster run's own log lines
    assert main(["slice", "sam/main/cells01", "--c", "3", "-o", str(tmp_path / "s.png"), "--root", str(root)]) == 2
    assert capsys.readouterr().err == "error: c=3 is out of range: this stack has C=3 (c from 0 to 2)\n"
    assert main(["slice", "sam/main/nothing", "-o", str(tmp_path / "s.png"), "--root", str(root)]) == 2
    assert "has no published OME-Zarr copy yet: run process_stack" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_guessed_axes_warn_and_one_channel_skips_pca(user_files_root, dagster_instance):
    stack_files.plain_stack(user_files_root / "sam" / "inputs" / "main", name="plain01.tif")
    result = run(dagster_instance, "process_stack", "sam/main/plain01")
    assert result.success, failure_message(result)
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(c.check_name, c.passed, c.severity.value) for c in checks] == [
        ("stack_axes_named", False, "WARN"),
        ("stack_nuclear_channel", False, "WARN"),
    ]
    assert "one channel" in metadata_of(result, "channel_pca")["skipped"]
    assert (user_files_root / "sam" / "outputs" / "main" / "plain01" / "stack.ome.zarr").is_dir()


@pytest.mark.parametrize(
    "damage, expected", [("truncated", "damaged or truncated file"), ("inconsistent", "inconsistent OME metadata")]
)
def test_a_damaged_reupload_fails_and_keeps_the_published_stack(user_files_root, dagster_instance, tmp_path, damage, expected):
    key = f"sam/main/bad{damage}"
    good = stack_files.ome_stack(user_files_root / "sam" / "inputs" / "main", name=f"bad{damage}.ome.tif")
    assert run(dagster_instance, "process_stack", key).success
    published = user_files_root / "sam" / "outputs" / "main" / f"bad{damage}"
    before = published.resolve()
    copy = tmp_path / good.name
    shutil.copyfile(good, copy)
    (stack_files.truncated if damage == "truncated" else stack_files.inconsistent_ome)(copy, good)
    uploaded = digest(good)
    result = run(dagster_instance, "process_stack", key)
    assert not result.success
    message = failure_message(result)
    assert expected in message and len(message.splitlines()) == 1 and message.startswith(good.name)
    assert published.resolve() == before and (published / "stack.ome.zarr").is_dir()
    assert digest(good) == uploaded


def test_a_reexecution_starts_from_its_parent_runs_files(tmp_path):
    from wsi_assets.core.keys import SlideKey
    from wsi_assets.stacks.result_set import stage_stack_set

    (tmp_path / "sam" / "inputs").mkdir(parents=True)
    key = SlideKey("sam", "main", "cells01")
    parent = stage_stack_set(tmp_path, key, "run-a")
    parent.metadata.write_text("{}")
    child = stage_stack_set(tmp_path, key, "run-b", parent_run_id="run-a")
    assert child.metadata.read_text() == "{}"
    assert not parent.folder.exists()  # swept as stale once its files are linked into the child
    assert not any(stage_stack_set(tmp_path, key, "run-c").folder.iterdir())  # a fresh run starts empty


def test_submit_checks_a_stack_as_the_sensor_does(tmp_path, small_slide, monkeypatch):
    from wsi_assets.cli.submit import submit
    from wsi_assets.core.keys import SlideKey
    from wsi_assets.uploads.checks import UploadRefused, checked_upload
    from wsi_assets.uploads.kinds import not_a_stack

    main = tmp_path / "alice" / "inputs" / "main"
    good = stack_files.ome_stack(main)
    tiled_multipage(main)
    shutil.copyfile(small_slide, main / "slide01.svs")
    monkeypatch.setenv("WSI_USER_FILES", str(tmp_path))
    assert checked_upload(tmp_path, SlideKey("alice", "main", "cells01"), not_a_stack) == good
    with pytest.raises(UploadRefused, match="tiled.tif: ambiguous: OpenSlide reads it"):
        submit("alice/main/tiled", "process_stack")
    with pytest.raises(UploadRefused, match="slide01.svs: a slide, not a stack: queue process_slide for it"):
        submit("alice/main/slide01", "process_stack")
    with pytest.raises(UploadRefused, match="cells01.ome.tif: not a slide OpenSlide can read"):
        submit("alice/main/cells01", "process_slide")
