"""The upload sensor: what becomes a partition and a run, what waits, and what is skipped and why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wsi_assets.uploads.scan import ScanCursor, scan_uploads


def upload(root: Path, relpath: str, source: Path | None = None, data: bytes | None = None) -> Path:
    target = root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, target)
    else:
        target.write_bytes(data or b"")
    return target


def look_twice(root: Path, cursor: ScanCursor | None = None):
    first = scan_uploads(root, cursor or ScanCursor())
    return first, scan_uploads(root, first.cursor)


def skipped_reasons(result) -> dict[str, str]:
    return dict(result.skipped)


def test_new_file_is_requested_once_it_is_stable(tmp_path, small_slide):
    upload(tmp_path, "alice/inputs/main/slide01.svs", small_slide)
    first, second = look_twice(tmp_path)
    assert first.requests == [] and [rel for rel, _ in first.waiting] == ["alice/inputs/main/slide01.svs"]
    assert [r.key.partition_key for r in second.requests] == ["alice/main/slide01"]
    request = second.requests[0]
    stat = (tmp_path / "alice/inputs/main/slide01.svs").stat()
    assert request.run_key == f"alice/main/slide01:{stat.st_size}:{stat.st_mtime_ns}"
    third = scan_uploads(tmp_path, second.cursor)
    assert third.requests == [] and third.waiting == [] and third.skipped == []


def test_file_directly_in_inputs_belongs_to_branch_main(tmp_path, small_slide):
    upload(tmp_path, "bob/inputs/slide02.svs", small_slide)
    upload(tmp_path, "bob/inputs/cohort-b/slide03.svs", small_slide)
    _, second = look_twice(tmp_path)
    assert sorted(r.key.partition_key for r in second.requests) == ["bob/cohort-b/slide03", "bob/main/slide02"]


def test_file_still_growing_is_not_requested(tmp_path, small_slide):
    data = small_slide.read_bytes()
    target = upload(tmp_path, "alice/inputs/main/big.svs", data=data[: len(data) // 2])
    first = scan_uploads(tmp_path, ScanCursor())
    with open(target, "ab") as out:  # the copy goes on between two looks
        out.write(data[len(data) // 2 :])
    second = scan_uploads(tmp_path, first.cursor)
    assert second.requests == []
    assert "still being written" in dict(second.waiting)["alice/inputs/main/big.svs"]
    third = scan_uploads(tmp_path, second.cursor)
    assert [r.key.partition_key for r in third.requests] == ["alice/main/big"]


def test_reupload_requests_a_new_run(tmp_path, small_slide, tmp_path_factory):
    target = upload(tmp_path, "alice/inputs/main/slide01.svs", small_slide)
    _, second = look_twice(tmp_path)
    old_run_key = second.requests[0].run_key
    # The lab replaces the file with a new scan of the same slide.
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    rescan = tmp_path_factory.mktemp("rescan") / "slide01.svs"
    write_synthetic_slide(rescan, SyntheticSlideSpec(width=1100, height=800, mpp=0.25, seed=2))
    shutil.copyfile(rescan, target)
    _, after = look_twice(tmp_path, second.cursor)
    assert [r.key.partition_key for r in after.requests] == ["alice/main/slide01"]
    assert after.requests[0].run_key != old_run_key


def test_reupload_with_preserved_old_mtime_is_still_seen(tmp_path, small_slide):
    _, before = look_twice(tmp_path)
    target = upload(tmp_path, "alice/inputs/main/old.svs", small_slide)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))  # like `cp -p` or `rsync -a`
    _, second = look_twice(tmp_path, before.cursor)
    assert [r.key.partition_key for r in second.requests] == ["alice/main/old"]


@pytest.mark.parametrize(
    "relpath, expected",
    [
        ("bad user/inputs/main/slide.svs", "user name 'bad user'"),
        ("alice/inputs/bad branch!/slide.svs", "branch name 'bad branch!'"),
        ("alice/inputs/main/my slide.svs", "slide name 'my slide'"),
    ],
)
def test_invalid_names_are_skipped_with_a_reason(tmp_path, small_slide, relpath, expected):
    upload(tmp_path, relpath, small_slide)
    first, second = look_twice(tmp_path)
    reasons = {**skipped_reasons(first), **skipped_reasons(second)}
    assert any(expected in why for why in reasons.values()), reasons
    assert second.requests == [] and first.requests == []


def test_non_slide_files_are_skipped_with_a_reason(tmp_path):
    upload(tmp_path, "alice/inputs/main/notes.txt", data=b"meeting notes")
    upload(tmp_path, "alice/inputs/main/broken.svs", data=b"this is not a slide" * 100)
    first, second = look_twice(tmp_path)
    reasons = {**skipped_reasons(first), **skipped_reasons(second)}
    assert "not a slide: extension '.txt'" in reasons["alice/inputs/main/notes.txt"]
    assert "not a slide OpenSlide can read" in reasons["alice/inputs/main/broken.svs"]
    assert first.requests == second.requests == []
    # Reported once, not at every tick.
    assert scan_uploads(tmp_path, second.cursor).skipped == []


def test_two_files_with_the_same_stem_in_one_branch_are_both_skipped(tmp_path, small_slide):
    upload(tmp_path, "alice/inputs/main/slide05.svs", small_slide)
    upload(tmp_path, "alice/inputs/main/slide05.tif", small_slide)
    upload(tmp_path, "alice/inputs/other/slide05.svs", small_slide)  # same stem, other branch: fine
    first, second = look_twice(tmp_path)
    reasons = {**skipped_reasons(first), **skipped_reasons(second)}
    for rel in ("alice/inputs/main/slide05.svs", "alice/inputs/main/slide05.tif"):
        assert "ambiguous" in reasons[rel] and "rename or remove one" in reasons[rel]
    assert [r.key.partition_key for r in second.requests] == ["alice/other/slide05"]


def test_each_tick_is_bounded_and_the_cursor_stays_small(tmp_path, small_slide):
    for i in range(30):
        upload(tmp_path, f"carol/inputs/main/s{i:02d}.svs", small_slide)
    cursor, requested = ScanCursor(), []
    for _ in range(8):
        result = scan_uploads(tmp_path, cursor, max_files_per_tick=10)
        requested += [r.key.stem for r in result.requests]
        cursor = result.cursor
    assert sorted(requested) == [f"s{i:02d}" for i in range(30)]
    assert len(cursor.serialize()) < 200, cursor.serialize()


def test_dotfiles_are_ignored_as_temporary(tmp_path, small_slide):
    upload(tmp_path, "alice/inputs/main/.slide01.svs.part", small_slide)
    first, second = look_twice(tmp_path)
    assert first.waiting == first.skipped == second.requests == second.skipped == []


def test_dagster_sensor_adds_partition_and_requests_process_slide(tmp_path, small_slide, dagster_instance):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    upload(tmp_path, "dora/inputs/main/slide01.svs", small_slide)
    upload(tmp_path, "dora/inputs/main/readme.txt", data=b"x")
    resources = {"user_files": UserFilesResource(root=str(tmp_path))}
    first = upload_sensor(build_sensor_context(instance=dagster_instance, resources=resources))
    assert first.run_requests == []
    assert "skipped dora/inputs/main/readme.txt: not a slide" in first.skip_reason.skip_message
    assert "waiting dora/inputs/main/slide01.svs" in first.skip_reason.skip_message
    second = upload_sensor(build_sensor_context(instance=dagster_instance, resources=resources, cursor=first.cursor))
    assert [r.partition_key for r in second.run_requests] == ["dora/main/slide01"]
    assert second.run_requests[0].run_key.startswith("dora/main/slide01:")
    assert second.dynamic_partitions_requests[0].partition_keys == ["dora/main/slide01"]
    assert second.run_requests[0].job_name in (None, "process_slide")


def test_names_that_differ_only_in_case_are_both_skipped(tmp_path, small_slide):
    # On an SMB share or a Mac, outputs/main/Case/ and outputs/main/case/ are one folder.
    from wsi_assets.batches.scan import list_batch_folders
    from wsi_assets.core.keys import SlideKey
    from wsi_assets.core.user_files import find_slide_file
    from wsi_assets.uploads.checks import UploadRefused, checked_upload

    upload(tmp_path, "alice/inputs/main/Case.svs", small_slide)
    upload(tmp_path, "alice/inputs/main/case.svs", small_slide)
    upload(tmp_path, "alice/inputs/other/Case.svs", small_slide)  # another branch: another output folder
    (tmp_path / "alice/inputs/main/Slide7").mkdir()  # a batch folder beside a slide of the same name but for case
    upload(tmp_path, "alice/inputs/main/slide7.svs", small_slide)
    first, second = look_twice(tmp_path)
    reasons = {**skipped_reasons(first), **skipped_reasons(second)}
    for rel in ("alice/inputs/main/Case.svs", "alice/inputs/main/case.svs"):
        assert "differ only in upper/lower case" in reasons[rel] and "case-insensitive" in reasons[rel], reasons[rel]
    assert sorted(r.key.partition_key for r in second.requests) == ["alice/main/slide7", "alice/other/Case"]
    with pytest.raises(UploadRefused, match="differ only in upper/lower case"):
        checked_upload(tmp_path, SlideKey("alice", "main", "Case"))
    with pytest.raises(FileExistsError, match="upper/lower case ignored"):
        find_slide_file(tmp_path, SlideKey("alice", "main", "case"))
    folders, refused = list_batch_folders(tmp_path)
    assert folders == [] and "has the name 'Slide7' too (case ignored)" in dict(refused)["alice/inputs/main/Slide7/"]
