"""The result-set mechanism slides, stacks and batches share (wsi_assets.results.staged_sets).

Each kind stages, carries files over, publishes and sweeps through the same code, so what one
kind guarantees the others do: a new set holds only real files (never a link, never an unfinished
write's temporary), and a set that is not whole publishes nothing and leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsi_assets.batches.result_set import publish_batch_set
from wsi_assets.core.keys import SlideKey
from wsi_assets.results.result_sets import stage_run_set
from wsi_assets.results.staged_sets import stage_set
from wsi_assets.stacks.result_set import stage_stack_set


def _entries(folder: Path) -> dict[str, str]:
    """Every entry under `folder`, links not followed: 'link', 'folder' or the file's text."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        found[relative] = "link" if path.is_symlink() else "folder" if path.is_dir() else path.read_text()
    return found


def test_a_stack_reexecution_carries_files_but_no_links_or_temporaries(tmp_path):
    key = SlideKey("sam", "main", "cells01")
    (tmp_path / "sam" / "inputs" / "main").mkdir(parents=True)
    upload = tmp_path / "sam" / "inputs" / "main" / "cells01.ome.tif"
    upload.write_text("the user's upload")
    parent = stage_stack_set(tmp_path, key, "run-a")
    parent.metadata.write_text("{}")
    (parent.zarr / "0").mkdir(parents=True)
    (parent.zarr / "0" / "c").write_text("chunk")
    (parent.folder / ".channel_stats.json.tmp-1a2b3c4d").write_text("half written")
    # A link inside the user's folder passes the confinement check; a write through it would land in the upload.
    (parent.folder / "stack_file.json").symlink_to(upload)
    chunk = (parent.zarr / "0" / "c").stat().st_ino

    child = stage_stack_set(tmp_path, key, "run-b", parent_run_id="run-a")

    assert _entries(child.folder) == {
        "stack.ome.zarr": "folder",
        "stack.ome.zarr/0": "folder",
        "stack.ome.zarr/0/c": "chunk",
        "stack_metadata.json": "{}",
    }
    assert (child.zarr / "0" / "c").stat().st_ino == chunk  # the parent's chunk itself (a hard link), not a copy
    assert upload.read_text() == "the user's upload"


def test_a_parent_set_that_is_a_link_is_not_carried(tmp_path):
    """A run id naming a link among the sets (made by hand, pointing at the user's uploads) starts
    the re-execution from the published set, not from whatever the link shows."""
    key = SlideKey.parse("rs-parentlink/main/s1")
    inputs = tmp_path / "rs-parentlink" / "inputs" / "main"
    inputs.mkdir(parents=True)
    (inputs / "s1.svs").write_text("the user's slide")
    sets = tmp_path / "rs-parentlink" / "outputs" / "main" / ".sets" / "s1"
    sets.mkdir(parents=True)
    (sets / "handmade").symlink_to(inputs)

    staged = stage_run_set(tmp_path, key, "nextrun", "exports", base_run_id="handmade")

    assert _entries(staged.folder) == {}
    assert (inputs / "s1.svs").stat().st_nlink == 1


def test_a_batch_set_without_every_file_publishes_nothing(tmp_path):
    key = SlideKey.parse("rs-batch/main/cores")
    branch = tmp_path / "rs-batch" / "outputs" / "main"
    required = ("manifest.json", "cells.parquet", "summary.json")

    with pytest.raises(FileNotFoundError) as refused:
        publish_batch_set(tmp_path, key, "run1", required)  # the run staged nothing
    assert (
        str(refused.value)
        == f"{key}: this run's result set lacks manifest.json, cells.parquet, summary.json; the previous results stay published"
    )
    assert not (branch / ".sets" / "cores").exists(), "a refused publish made a set"

    folder = stage_set(tmp_path, key, "run1")
    (folder / "manifest.json").write_text("{}")
    (folder / "cells.parquet").write_text("cells")
    with pytest.raises(FileNotFoundError, match=r"lacks summary\.json; the previous results stay published$"):
        publish_batch_set(tmp_path, key, "run1", required)
    assert not os.path.lexists(branch / "cores")

    (folder / "summary.json").write_text("{}")
    (folder / ".summary.json.tmp-5e6f7a8b").write_text("an interrupted write")
    assert publish_batch_set(tmp_path, key, "run1", required) == branch / "cores"
    assert os.readlink(branch / "cores") == os.path.join(".sets", "cores", "run1")
    assert _entries(branch / "cores") == {"cells.parquet": "cells", "manifest.json": "{}", "summary.json": "{}"}


def test_a_publish_is_on_disk_before_it_returns(tmp_path, monkeypatch):
    """The set's entries are flushed before the link switch, and the switch itself after it: a
    power cut right after publishing cannot bring back the previous set, or a link to a half-flushed one."""
    from wsi_assets.core import atomic
    from wsi_assets.results import staged_sets

    key = SlideKey.parse("rs-durable/main/cores")
    branch = tmp_path / "rs-durable" / "outputs" / "main"
    folder = stage_set(tmp_path, key, "run1")
    (folder / "summary.json").write_text("{}")
    events: list[tuple[str, str]] = []
    replace = os.replace
    monkeypatch.setattr(atomic, "_fsync_tree", lambda path: events.append(("flush", Path(path).name)))
    monkeypatch.setattr(atomic, "_fsync_path", lambda path: events.append(("fsync", Path(path).name)))
    monkeypatch.setattr(staged_sets.os, "replace", lambda a, b: (events.append(("switch", Path(b).name)), replace(a, b)))

    publish_batch_set(tmp_path, key, "run1", ("summary.json",))

    assert ("flush", "run1") in events and ("fsync", "main") in events, events
    switch = events.index(("switch", "cores"))
    assert events.index(("flush", "run1")) < switch < events.index(("fsync", "main")), events
    assert os.readlink(branch / "cores") == os.path.join(".sets", "cores", "run1")
