"""Result sets: a slide's outputs are published whole or not at all, inside the user's own folder.

Each case is a bad input or a fault: a link out of the user's folder, a run failing halfway, a
slide replaced mid-run, a run killed mid-write. Each checks the one-line message, that the
upload is unchanged, that another user's outputs are unchanged (every file hashed), and that the
previous result set is intact or the new one complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.core.confinement import PathOutsideUserFolder
from wsi_assets.core.keys import SlideKey
from wsi_assets.results.result_sets import (
    IncompleteResultSet,
    publish_run_set,
    read_run_set,
    stage_run_set,
)
from wsi_assets.results.slide_identity import (
    SlideChangedDuringRun,
    ensure_unchanged,
    slide_identity,
)

# Only the formats a branch without branch.yaml gets: off-by-default ones (COCO, YOLO) are not written.
EXPORT_FILES = tuple(export.file_name for export in EXPORT_FORMATS if export.default_on)
FULL_SET = {
    "slide_metadata.json",
    "thumbnail.jpg",
    "slide_file.json",
    "tissue_mask.png",
    "tissue_mask.json",
    "tissue_overlay.jpg",
    "qc_overlay.jpg",
    "segmentation/cells.parquet",
    "segmentation/summary.json",
    *EXPORT_FILES,
}
# Rewritten by every run that publishes (it names the run), like the exports.
REWRITTEN = (*EXPORT_FILES, "report.html")


# ---------------------------------------------------------------- helpers


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (links not followed): file hashes, link targets, folders."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[relative] = "link:" + os.readlink(path)
            elif path.is_file():
                found[relative] = digest(path)
            else:
                found[relative] = "folder"
    return found


def published(root: Path, key: str) -> tuple[str, dict[str, str]]:
    """The published link's target and the hashes of the set it shows."""
    folder = root.joinpath(*_output_parts(key))
    return os.readlink(folder), tree(folder.resolve())


def _output_parts(key: str) -> tuple[str, ...]:
    user, branch, stem = key.split("/")
    return user, "outputs", branch, stem


def sets_of(root: Path, key: str) -> list[str]:
    user, branch, stem = key.split("/")
    return sorted(p.name for p in (root / user / "outputs" / branch / ".sets" / stem).iterdir())


def upload(root: Path, key: str, source: Path) -> Path:
    user, branch, stem = key.split("/")
    target = root / user / "inputs" / branch / f"{stem}{source.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def run_job(instance, job: str, key: str, **kwargs):
    from wsi_assets.definitions import defs

    instance.add_dynamic_partitions("slides", [key])
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key, raise_on_error=False, **kwargs)


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message.strip()


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def one_line(message: str) -> str:
    assert len(message.splitlines()) == 1, message
    return message


@contextmanager
def replace_upload_mid_run(root: Path, key: str, target: Path, new_bytes: bytes):
    """Replace the upload the moment a new run has recorded it (slide_metadata done), as a user would."""
    user, branch, stem = key.split("/")
    sets = root / user / "outputs" / branch / ".sets" / stem
    before = set(os.listdir(sets)) if sets.is_dir() else set()
    replaced, stop = threading.Event(), threading.Event()

    def watch():
        while not stop.is_set():
            if sets.is_dir() and any((sets / name / "slide_file.json").exists() for name in set(os.listdir(sets)) - before):
                staging = target.with_name(f".{target.name}.incoming")
                staging.write_bytes(new_bytes)
                os.replace(staging, target)
                replaced.set()
                return
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield replaced
    finally:
        stop.set()
        watcher.join()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def other_slide(tmp_path_factory) -> Path:
    """A second real slide, different in size and content from `small_slide`."""
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    path = tmp_path_factory.mktemp("result_sets") / "other.svs"
    write_synthetic_slide(path, SyntheticSlideSpec(width=1280, height=1024, mpp=0.25, seed=7))
    return path


@pytest.fixture(scope="module")
def bystander(user_files_root, dagster_instance, small_slide):
    """Another user's finished slide: every case checks it is left exactly as it was."""
    key = "rs-bob/main/s1"
    upload(user_files_root, key, small_slide)
    assert run_job(dagster_instance, "process_slide", key).success
    folder = user_files_root / "rs-bob"
    return folder, tree(folder)


@pytest.fixture
def processed(user_files_root, dagster_instance, small_slide, bystander, request):
    """A fresh user (named after the test) with one fully processed slide."""
    user = "rs-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    key = f"{user}/main/s1"
    uploaded = upload(user_files_root, key, small_slide)
    first = run_job(dagster_instance, "process_slide", key)
    assert first.success
    yield key, uploaded, first
    assert tree(bystander[0]) == bystander[1], "another user's outputs changed"


# ---------------------------------------------------------------- links out of the user's folder


def test_outputs_linked_to_another_users_outputs_is_refused(user_files_root, dagster_instance, small_slide, bystander):
    key = "rs-alice/main/s1"
    uploaded = upload(user_files_root, key, small_slide)
    (user_files_root / "rs-alice" / "outputs").symlink_to(user_files_root / "rs-bob" / "outputs")
    result = run_job(dagster_instance, "process_slide", key)
    assert not result.success
    message = one_line(failure_message(result))
    assert "rs-alice/outputs" in message and "outside rs-alice/" in message and "replace the link" in message
    assert tree(bystander[0]) == bystander[1]
    assert digest(uploaded) == digest(small_slide)
    assert not materialized(result)


def test_branch_output_folder_linked_outside_the_root_is_refused(user_files_root, small_slide, tmp_path, bystander):
    key = SlideKey.parse("rs-branchlink/main/s1")
    uploaded = upload(user_files_root, key.partition_key, small_slide)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (user_files_root / "rs-branchlink" / "outputs").mkdir(parents=True)
    (user_files_root / "rs-branchlink" / "outputs" / "main").symlink_to(elsewhere)
    for attempt in (
        lambda: stage_run_set(user_files_root, key, "run1", "slide"),
        lambda: read_run_set(user_files_root, key, "run1"),
    ):
        with pytest.raises(PathOutsideUserFolder) as refused:
            attempt()
        message = one_line(str(refused.value))
        assert (
            message.startswith("rs-branchlink/outputs/main is a link leading outside rs-branchlink/")
            and "replace the link" in message
        )
    assert list(elsewhere.iterdir()) == []
    assert digest(uploaded) == digest(small_slide)
    assert tree(bystander[0]) == bystander[1]


def test_slide_output_folder_linked_to_another_users_set_is_refused(user_files_root, processed, bystander, small_slide):
    key, uploaded, _ = processed
    user, branch, stem = key.split("/")
    published_path = user_files_root / user / "outputs" / branch / stem
    own_target, own_set = published(user_files_root, key)
    published_path.unlink()
    published_path.symlink_to(user_files_root / "rs-bob" / "outputs" / "main" / "s1")
    for attempt in (
        lambda: stage_run_set(user_files_root, SlideKey.parse(key), "run2", "exports"),
        lambda: publish_run_set(user_files_root, SlideKey.parse(key), "run2", EXPORT_FILES, uploaded),
    ):
        with pytest.raises(PathOutsideUserFolder) as refused:
            attempt()
        assert one_line(str(refused.value)).startswith(
            f"{key.replace('/main/', '/outputs/main/')} is a link leading outside {user}/"
        )
    assert tree(bystander[0]) == bystander[1]
    assert tree(user_files_root / user / "outputs" / branch / ".sets" / stem / Path(own_target).name) == own_set
    assert digest(uploaded) == digest(small_slide)


def test_segmentation_folder_linked_out_is_refused(
    user_files_root, dagster_instance, processed, tmp_path, bystander, small_slide
):
    key, uploaded, _ = processed
    user, branch, stem = key.split("/")
    folder = (user_files_root / user / "outputs" / branch / stem).resolve()
    outside = tmp_path / "stolen-segmentation"
    shutil.move(folder / "segmentation", outside)
    (folder / "segmentation").symlink_to(outside)
    before_outside, before_set = tree(outside), published(user_files_root, key)
    result = run_job(dagster_instance, "export_cells", key)
    assert not result.success
    message = one_line(failure_message(result))
    assert "/segmentation is a link leading outside" in message and "replace the link with a real folder" in message
    assert tree(outside) == before_outside
    assert published(user_files_root, key) == before_set
    assert digest(uploaded) == digest(small_slide)


def test_refusal_of_a_link_into_another_users_folder_does_not_name_it(tmp_path):
    """The message is shown to alice: where her link leads (bob's folder) is bob's business."""
    root = tmp_path / "user_files"
    bobs = root / "bob-private" / "outputs" / "main" / "case-2024-117"
    bobs.mkdir(parents=True)
    (root / "alice" / "outputs" / "main").mkdir(parents=True)
    (root / "alice" / "outputs" / "main" / "s1").symlink_to(bobs)
    with pytest.raises(PathOutsideUserFolder) as refused:
        stage_run_set(root, SlideKey.parse("alice/main/s1"), "run1", "slide")
    message = one_line(str(refused.value))
    assert message.startswith("alice/outputs/main/s1 is a link leading outside alice/: ") and "replace the link" in message
    assert "bob-private" not in message and "case-2024-117" not in message
    assert list(bobs.iterdir()) == []


def test_user_folder_that_is_a_link_is_refused(user_files_root, tmp_path, small_slide, bystander):
    real = tmp_path / "carol-real"
    (real / "inputs" / "main").mkdir(parents=True)
    shutil.copyfile(small_slide, real / "inputs" / "main" / "s1.svs")
    (user_files_root / "rs-carol").symlink_to(real)
    with pytest.raises(PathOutsideUserFolder) as refused:
        stage_run_set(user_files_root, SlideKey.parse("rs-carol/main/s1"), "run1", "slide")
    message = one_line(str(refused.value))
    assert message.startswith("rs-carol/ is a link") and "replace the link with the folder" in message
    assert sorted(p.name for p in real.iterdir()) == ["inputs"]
    assert digest(real / "inputs" / "main" / "s1.svs") == digest(small_slide)
    assert tree(bystander[0]) == bystander[1]


# ---------------------------------------------------------------- whole sets


def test_failure_halfway_through_a_rerun_keeps_the_previous_set(user_files_root, dagster_instance, processed):
    key, uploaded, _ = processed
    before = published(user_files_root, key)
    with replace_upload_mid_run(user_files_root, key, uploaded, b"not a slide any more") as replaced:
        result = run_job(dagster_instance, "process_slide", key)
    assert replaced.is_set() and not result.success
    assert "slide_metadata" in materialized(result) and "slide_results" not in materialized(result)
    message = one_line(failure_message(result))
    assert (
        message
        == f"{key.split('/')[0]}/inputs/main/s1.svs changed while it was being processed; nothing was published, and it will be processed again once it is stable"
    )
    assert published(user_files_root, key) == before
    assert set(before[1]) >= FULL_SET
    assert uploaded.read_bytes() == b"not a slide any more"  # the user's replacement, untouched by the run


def test_successful_rerun_replaces_the_whole_set(user_files_root, dagster_instance, processed, other_slide):
    key, uploaded, first = processed
    before_target, before = published(user_files_root, key)
    shutil.copyfile(other_slide, uploaded)
    rerun = run_job(dagster_instance, "process_slide", key)
    assert rerun.success
    target, after = published(user_files_root, key)
    assert target.endswith(rerun.run_id) and before_target.endswith(first.run_id)
    assert set(after) >= FULL_SET and set(after) == set(before)
    changed = {name for name in FULL_SET if after[name] != before[name]}
    assert changed >= {"slide_metadata.json", "thumbnail.jpg", "slide_file.json", "segmentation/cells.parquet", *EXPORT_FILES}
    folder = user_files_root.joinpath(*_output_parts(key))
    # Every file was written by the re-run: none is a hard link kept from the first set.
    assert all((folder / name).stat().st_nlink == 1 for name in FULL_SET)
    assert json.loads((folder / "slide_metadata.json").read_text())["width"] == 1280
    assert json.loads((folder / "slide_file.json").read_text())["size"] == other_slide.stat().st_size
    assert sets_of(user_files_root, key) == [rerun.run_id]
    assert digest(uploaded) == digest(other_slide)


def test_slide_replaced_mid_run_fails_and_publishes_nothing(user_files_root, dagster_instance, processed, other_slide):
    key, uploaded, _ = processed
    before = published(user_files_root, key)
    with replace_upload_mid_run(user_files_root, key, uploaded, other_slide.read_bytes()) as replaced:
        result = run_job(dagster_instance, "process_slide", key)
    assert replaced.is_set() and not result.success
    assert "changed while it was being processed" in one_line(failure_message(result))
    assert "slide_results" not in materialized(result)
    assert published(user_files_root, key) == before
    assert digest(uploaded) == digest(other_slide)


def test_identity_check_catches_a_same_size_replacement(tmp_path, small_slide):
    slide = tmp_path / "inputs" / "s.svs"
    slide.parent.mkdir()
    shutil.copyfile(small_slide, slide)
    recorded = slide_identity(slide)
    ensure_unchanged(recorded, slide, tmp_path)
    data = bytearray(slide.read_bytes())
    data[-10] ^= 0xFF  # same size, restored mtime: only the fingerprint tells
    stat = slide.stat()
    slide.write_bytes(bytes(data))
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(SlideChangedDuringRun, match=r"^inputs/s\.svs changed while it was being processed"):
        ensure_unchanged(recorded, slide, tmp_path)
    slide.unlink()
    with pytest.raises(SlideChangedDuringRun):
        ensure_unchanged(recorded, slide, tmp_path)


def test_incomplete_set_is_not_published(user_files_root, processed, small_slide):
    key, uploaded, _ = processed
    slide_key = SlideKey.parse(key)
    before = published(user_files_root, key)
    staged = stage_run_set(user_files_root, slide_key, "partialrun", "exports")
    (staged.folder / "cells.csv").unlink()  # an export that never got written
    with pytest.raises(IncompleteResultSet) as refused:
        publish_run_set(user_files_root, slide_key, "partialrun", EXPORT_FILES, uploaded)
    assert one_line(str(refused.value)) == (
        f"{key}: this run's result set lacks cells.csv; the previous results stay published (run process_slide to make a whole set)"
    )
    assert published(user_files_root, key) == before
    assert digest(uploaded) == digest(small_slide)


def _write_stages(outputs, stages: tuple[str, ...]) -> None:
    """Stand-in files (publishing checks which files a set holds, not what they say) for `stages`."""
    for stage, paths in outputs.stage_required(EXPORT_FILES).items():
        if stage in stages:
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f"{stage}:{path.name}".encode())


def test_cells_without_any_export_are_not_published(tmp_path):
    key = SlideKey.parse("rs-noexports/main/s1")
    staged = stage_run_set(tmp_path, key, "cellsonly", "exports")
    _write_stages(staged, ("slide", "tissue", "cells"))  # segmented, then killed before any export
    with pytest.raises(IncompleteResultSet) as refused:
        publish_run_set(tmp_path, key, "cellsonly", EXPORT_FILES, None)
    assert one_line(str(refused.value)) == (
        f"{key.partition_key}: this run's result set lacks {', '.join(EXPORT_FILES)}; "
        "the previous results stay published (run process_slide to make a whole set)"
    )
    assert not (tmp_path / "rs-noexports" / "outputs" / "main" / "s1").exists()


def test_a_new_set_carries_files_but_never_links(tmp_path):
    """Links in the published set (one within it, one to elsewhere in the user's folder) are left
    behind: a write through one would land outside the run's own set."""
    key = SlideKey.parse("rs-links/main/s1")
    elsewhere = tmp_path / "rs-links" / "notes.txt"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text("the user's own notes")
    base = stage_run_set(tmp_path, key, "firstrun", "exports")
    _write_stages(base, ("slide", "tissue", "cells", "exports"))
    (base.folder / "cells-copy.csv").symlink_to("cells.csv")
    (base.folder / "segmentation" / "notes.txt").symlink_to(elsewhere)
    assert publish_run_set(tmp_path, key, "firstrun", EXPORT_FILES, None) is not None

    staged = stage_run_set(tmp_path, key, "nextrun", "exports")
    links = sorted(p.relative_to(staged.folder).as_posix() for p in staged.folder.rglob("*") if p.is_symlink())
    assert links == [], f"links carried into the new set: {links}"
    carried = {p.relative_to(base.folder): p.stat().st_ino for p in base.folder.rglob("*") if p.is_file() and not p.is_symlink()}
    assert carried and {p: (staged.folder / p).stat().st_ino for p in carried} == carried  # hard links of the same files
    assert elsewhere.read_text() == "the user's own notes"


def test_selection_without_the_publishing_step_fails_clearly(user_files_root, dagster_instance, processed, small_slide):
    from dagster import AssetKey

    key, uploaded, _ = processed
    before = published(user_files_root, key)
    result = run_job(dagster_instance, "export_cells", key, asset_selection=[AssetKey("cells_csv")])
    assert not result.success
    assert one_line(failure_message(result)).startswith("cells_csv was selected without slide_results")
    assert published(user_files_root, key) == before
    assert digest(uploaded) == digest(small_slide)


def test_a_second_run_of_a_slide_launched_outside_the_queue_stops_in_one_line(
    user_files_root, dagster_instance, small_slide, bystander
):
    """Two runs of one slide at once (execute_in_process knows no queue): the later stops at its
    first step, saying which run holds the slide; the earlier finishes and publishes whole."""
    key = "rs-twice/main/s1"
    upload(user_files_root, key, small_slide)
    sets = user_files_root / "rs-twice" / "outputs" / "main" / ".sets" / "s1"
    done = {}
    first = threading.Thread(target=lambda: done.setdefault("first", run_job(dagster_instance, "process_slide", key)))
    first.start()
    deadline = time.time() + 120
    while not (sets.is_dir() and any(not name.startswith(".") for name in os.listdir(sets))) and first.is_alive():
        assert time.time() < deadline, "the first run never staged its set"
        time.sleep(0.05)
    second = run_job(dagster_instance, "process_slide", key)
    first.join()
    earlier = done["first"]
    assert earlier.success, failure_message(earlier)
    assert not second.success
    failures = [e for e in second.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    assert one_line(failure_message(second)) == (
        f"another run of {key} is in progress (run {earlier.run_id[:8]}); wait for it or cancel it, then launch this again"
    )
    assert materialized(second) == set()
    assert os.readlink(user_files_root / "rs-twice" / "outputs" / "main" / "s1").endswith(earlier.run_id)
    assert set(tree((user_files_root / "rs-twice" / "outputs" / "main" / "s1").resolve())) >= FULL_SET
    assert tree(bystander[0]) == bystander[1]


# ---------------------------------------------------------------- partial jobs


def test_export_cells_alone_republishes_a_complete_set(user_files_root, dagster_instance, processed, small_slide):
    key, uploaded, _ = processed
    _, before = published(user_files_root, key)
    folder = user_files_root.joinpath(*_output_parts(key))
    parquet_inode = (folder / "segmentation" / "cells.parquet").stat().st_ino
    csv_inode = (folder / "cells.csv").stat().st_ino
    result = run_job(dagster_instance, "export_cells", key)
    assert result.success
    target, after = published(user_files_root, key)
    assert target.endswith(result.run_id) and set(after) == set(before) >= FULL_SET
    assert (folder / "segmentation" / "cells.parquet").stat().st_ino == parquet_inode  # carried, not segmented again
    assert (folder / "cells.csv").stat().st_ino != csv_inode  # written by this run
    assert {name: after[name] for name in after if name not in REWRITTEN} == {n: before[n] for n in before if n not in REWRITTEN}
    assert sets_of(user_files_root, key) == [result.run_id]
    assert digest(uploaded) == digest(small_slide)


def test_tissue_mask_only_drops_the_cells_of_the_previous_mask(user_files_root, dagster_instance, processed, small_slide):
    key, uploaded, _ = processed
    _, before = published(user_files_root, key)
    result = run_job(dagster_instance, "tissue_mask_only", key)
    assert result.success
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["slide_results"]["through_stage"].value == "tissue"
    target, after = published(user_files_root, key)
    assert target.endswith(result.run_id)
    assert set(after) == {
        "slide_metadata.json",
        "thumbnail.jpg",
        "slide_file.json",
        "tissue_mask.png",
        "tissue_mask.json",
        "tissue_overlay.jpg",
        "report.html",
    }
    assert set(before) >= FULL_SET
    # Where the user sees it: a warning in the run's log, naming what left the published set.
    warnings = [
        e.user_message
        for e in dagster_instance.all_logs(result.run_id)
        if e.level == logging.WARNING and e.step_key == "slide_results"
    ]
    assert any("published a result set without cells" in w and "cells.csv" in w and "summary.xlsx" in w for w in warnings), (
        warnings
    )
    # The next export_cells says what is missing rather than exporting cells of another mask.
    again = run_job(dagster_instance, "export_cells", key)
    assert not again.success
    assert one_line(failure_message(again)) == (
        "segmentation/summary.json is missing from this slide's results: materialize 'cell_segmentation' for this slide first"
    )
    assert published(user_files_root, key)[1] == after
    assert digest(uploaded) == digest(small_slide)


def test_legacy_folder_is_migrated_to_a_set(user_files_root, dagster_instance, processed, small_slide):
    key, uploaded, _ = processed
    folder = user_files_root.joinpath(*_output_parts(key))
    real = folder.resolve()
    folder.unlink()
    shutil.copytree(real, folder)  # a slide folder as written before result sets existed
    (folder / "slide_file.json").unlink()
    legacy = tree(folder)
    result = run_job(dagster_instance, "export_cells", key)
    assert result.success
    assert folder.is_symlink() and os.readlink(folder).endswith(result.run_id)
    after = tree(folder.resolve())
    assert {n: after[n] for n in after if n not in REWRITTEN} == {n: legacy[n] for n in legacy if n not in REWRITTEN}
    assert set(after) >= FULL_SET - {"slide_file.json"}
    assert sets_of(user_files_root, key) == [result.run_id]
    assert digest(uploaded) == digest(small_slide)


# ---------------------------------------------------------------- what interrupted runs leave


def test_stale_sets_and_temporaries_are_swept_by_the_next_run(user_files_root, dagster_instance, processed, small_slide):
    key, uploaded, _ = processed
    user, branch, stem = key.split("/")
    branch_dir = user_files_root / user / "outputs" / branch
    sets = branch_dir / ".sets" / stem
    old_target, before = published(user_files_root, key)
    # What killed runs leave: a whole staging set, a half-built one, a half-made link, and
    # temporaries inside the published set.
    (sets / "killed-run" / "segmentation").mkdir(parents=True)
    (sets / "killed-run" / "segmentation" / "cells.parquet").write_bytes(b"half")
    (sets / ".killed-run.tmp-1a2b3c4d").mkdir()
    (branch_dir / f".{stem}.tmp-5e6f7a8b").symlink_to(".sets/s1/killed-run")
    current = branch_dir / old_target
    (current / ".cells.csv.tmp-9c0d1e2f").write_bytes(b"partial csv")
    (current / ".cells.zarr.zip.staging-4242").mkdir()

    # Starting a run sweeps the stale sets, and never the published one.
    stage_run_set(user_files_root, SlideKey.parse(key), "nextrun", "exports")
    assert sets_of(user_files_root, key) == sorted([Path(old_target).name, "nextrun"])
    assert not (branch_dir / f".{stem}.tmp-5e6f7a8b").exists()
    assert not [p for p in (sets / "nextrun").rglob("*") if p.name.startswith(".")], "temporaries carried into the new set"

    result = run_job(dagster_instance, "export_cells", key)
    assert result.success
    assert sets_of(user_files_root, key) == [result.run_id]
    target, after = published(user_files_root, key)
    assert target.endswith(result.run_id) and set(after) == set(before) >= FULL_SET
    assert not [p for p in branch_dir.iterdir() if p.name.startswith(f".{stem}.")]
    assert digest(uploaded) == digest(small_slide)
