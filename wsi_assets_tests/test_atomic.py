"""Atomic writes survive a power cut: data flushed before the rename, the rename flushed after, and a
folder replaced without a moment when its final name holds nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wsi_assets.core import atomic
from wsi_assets.core.atomic import atomic_output, write_text_atomic


def _record_disk_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Log each fsync (with the path the descriptor names) and each rename, in order."""
    steps: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target, **kwargs) -> None:
        steps.append(("rename", str(source), str(target)))
        real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return steps


def test_a_file_is_flushed_before_its_rename_and_the_rename_after(tmp_path, monkeypatch):
    final = tmp_path / "out" / "cells.csv"
    final.parent.mkdir()
    final.write_text("old")
    steps = _record_disk_steps(monkeypatch)
    write_text_atomic(final, "new")
    assert final.read_text() == "new"
    [rename] = [step for step in steps if step[0] == "rename"]
    temporary = rename[1]
    assert rename[2] == str(final) and Path(temporary).name.startswith(".cells.csv.tmp-")
    assert steps == [("fsync", temporary), rename, ("fsync", str(final.parent))]


def _write_zarr_like(final: Path) -> Path:
    with atomic_output(final) as temporary:
        (temporary / "0" / "0").mkdir(parents=True)
        (temporary / "0" / "0" / "chunk").write_bytes(b"pixels")
        (temporary / "zarr.json").write_text("{}")
    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*")) == ["0", "0/0", "0/0/chunk", "zarr.json"]
    return temporary


def test_a_folder_is_flushed_whole_before_it_replaces_the_old_one_and_the_swap_after(tmp_path, monkeypatch):
    final = tmp_path / "image.zarr"
    final.mkdir()
    (final / "old").write_text("old")
    steps = _record_disk_steps(monkeypatch)
    real_syncfs, real_exchange = atomic._syncfs, atomic._exchange

    def syncfs(folder: Path) -> bool:
        steps.append(("syncfs", str(folder), sorted(p.name for p in folder.rglob("*"))))
        return real_syncfs(folder)

    def exchange(first: Path, second: Path) -> bool:
        steps.append(("swap", str(first), str(second)))
        return real_exchange(first, second)

    monkeypatch.setattr(atomic, "_syncfs", syncfs)
    monkeypatch.setattr(atomic, "_exchange", exchange)
    temporary = _write_zarr_like(final)
    # Written whole, flushed, swapped in, and the swap flushed: in that order.
    assert steps == [
        ("syncfs", str(temporary), ["0", "0", "chunk", "zarr.json"]),
        ("swap", str(temporary), str(final)),
        ("fsync", str(tmp_path)),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["image.zarr"]  # the old copy is gone


def test_without_syncfs_every_file_and_folder_of_a_folder_is_flushed(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_syncfs", lambda folder: False)  # not Linux
    steps = _record_disk_steps(monkeypatch)
    temporary = _write_zarr_like(tmp_path / "image.zarr")
    flushed = [step[1] for step in steps if step[0] == "fsync"]
    written = [str(temporary / name) for name in ("0/0/chunk", "0/0", "0", "zarr.json")] + [str(temporary)]
    assert sorted(flushed[:-1]) == sorted(written) and flushed[-1] == str(tmp_path)
    assert flushed.index(str(temporary / "0/0/chunk")) < flushed.index(str(temporary / "0/0"))  # a file before its folder


def _complete_copy(folder: int | Path) -> str | None:
    """The generation a folder holds whole (two files written with the same number), else why not."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY) if isinstance(folder, Path) else folder
    except FileNotFoundError:
        return None
    try:
        texts = []
        for name in ("first", "second"):
            with open(os.open(name, os.O_RDONLY, dir_fd=descriptor), encoding="utf-8") as handle:
                texts.append(handle.read())
        return texts[0] if texts[0] == texts[1] else f"mixed {texts}"
    finally:
        if isinstance(folder, Path):
            os.close(descriptor)


def _write_generation(final: Path, generation: int) -> None:
    with atomic_output(final) as temporary:
        temporary.mkdir()
        for name in ("first", "second"):
            (temporary / name).write_text(str(generation))


def test_replacing_a_folder_leaves_a_complete_copy_under_its_name_at_every_step(tmp_path, monkeypatch):
    final = tmp_path / "previews"
    seen: list[str | None] = []
    real_replace, real_rename = os.replace, os.rename
    real_exchange = getattr(atomic, "_exchange", None)

    def checked(step):
        def run(*args, **kwargs):
            result = step(*args, **kwargs)
            if final.exists() or seen:  # from the first write on, the name never goes missing
                seen.append(_complete_copy(final))
            return result

        return run

    monkeypatch.setattr(os, "replace", checked(real_replace))
    monkeypatch.setattr(os, "rename", checked(real_rename))
    monkeypatch.setattr(atomic, "_exchange", checked(real_exchange), raising=False)
    for generation in range(3):
        _write_generation(final, generation)
    assert seen == ["0", "1", "2"]


def test_a_reader_never_finds_the_folder_missing_or_mixed_while_it_is_replaced(tmp_path, monkeypatch):
    final = tmp_path / "previews"
    _write_generation(final, 0)
    # Old copies stay whole after they are swapped out, so a reader that opened one reads it whole.
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *args, **kwargs: None)
    problems: list[str] = []
    reads = 0
    done = threading.Event()

    def read() -> None:
        nonlocal reads
        while not done.is_set():
            held = _complete_copy(final)
            reads += 1
            if held is None or held.startswith("mixed"):
                problems.append(f"read {reads}: {held or 'nothing under the name'}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for generation in range(1, 100):
            _write_generation(final, generation)
    finally:
        done.set()
        reader.join()
    assert problems == [] and reads > 0
    assert _complete_copy(final) == "99"


def test_without_a_name_swap_a_folder_is_still_replaced_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda first, second: False)  # not Linux, or no swap on this file system
    final = tmp_path / "labels"
    _write_generation(final, 1)
    _write_generation(final, 2)
    assert _complete_copy(final) == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["labels"]
