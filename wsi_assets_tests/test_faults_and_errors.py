"""Bad-input and fault matrix: each fault is one line naming the file, the problem and the fix; inputs untouched; not retried."""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import resource
import struct
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsi_assets.segmentation.settings import ConfigError, validate_segmentation_settings
from wsi_assets.slides.reader import (
    SlideReadError,
    open_slide,
    read_level_rgb,
)
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide
from wsi_assets_tests.conftest import run_process_slide


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _step_failures(result) -> list[str]:
    return [
        e.step_failure_data.user_failure_data.description
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_failure_data.user_failure_data is not None
    ]


def _retries(result) -> int:
    return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])


# --------------------------------------------------------------- crafted files
def declared_pixels_file(path: Path, width: int, height: int, tile: int = 1024, noisy: bool = False) -> Path:
    """A tiled JPEG TIFF declaring width x height px whose tile table points every tile at one small JPEG."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8) if noisy else np.full((tile, tile, 3), 255, np.uint8)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, tile=(tile, tile), photometric="rgb", compression="jpeg", compressionargs={"level": 95})
    with tifffile.TiffFile(io.BytesIO(buffer.getvalue())) as tif:
        page = tif.pages.first
        tif.filehandle.seek(page.dataoffsets[0])
        data = tif.filehandle.read(page.databytecounts[0])
    n = math.ceil(width / tile) * math.ceil(height / tile)
    data_offset, bps_offset = 8, 8 + len(data)
    offsets_offset = bps_offset + 6
    counts_offset = offsets_offset + 4 * n
    ifd_offset = counts_offset + 4 * n
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bps_offset),
        (259, 3, 1, 7),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (284, 3, 1, 1),
        (322, 3, 1, tile),
        (323, 3, 1, tile),
        (324, 4, n, offsets_offset),
        (325, 4, n, counts_offset),
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset)) + data + struct.pack("<3H", 8, 8, 8)
    out += struct.pack(f"<{n}I", *([data_offset] * n)) + struct.pack(f"<{n}I", *([len(data)] * n))
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    path.write_bytes(bytes(out + struct.pack("<I", 0)))
    return path


def corrupt_level0_tiles(path: Path) -> list[tuple[int, int]]:
    """Overwrite the JPEG start marker of every level-0 tile in place; returns (offset, size) of each."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tiles = list(zip(page.dataoffsets, page.databytecounts))
    with open(path, "r+b") as handle:
        for offset, _ in tiles:
            handle.seek(offset)
            handle.write(b"\x00" * 16)
    return tiles


@pytest.fixture(scope="module")
def tiled_slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "tiled.svs"
    write_synthetic_slide(path, SyntheticSlideSpec(width=2048, height=1536, mpp=0.25, seed=7))
    return path


# --------------------------------------------------------------- damaged and crafted slide files
def test_corrupt_jpeg_tile_names_the_file_and_the_region(tmp_path, tiled_slide):
    path = tmp_path / "damaged.svs"
    path.write_bytes(tiled_slide.read_bytes())
    corrupt_level0_tiles(path)
    before = _digest(path)
    read_slide_info(path)  # metadata and the coarse level are intact
    with open_slide(path) as slide, pytest.raises(SlideReadError) as caught:
        read_level_rgb(slide, 512, 256, 0, 256, 256)
    message = str(caught.value)
    assert message.startswith(
        "damaged.svs: cannot decode the region at level-0 x 512-768, y 256-512 (level 0): the file is damaged there ("
    )
    assert message.endswith("); re-export or re-upload the slide") and len(message.splitlines()) == 1
    assert _digest(path) == before


def test_truncated_slide_is_one_line(tmp_path, tiled_slide):
    path = tmp_path / "cut.svs"
    data = tiled_slide.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    before = _digest(path)
    with pytest.raises(SlideReadError) as caught:
        read_slide_info(path)
        with open_slide(path) as slide:
            for y in range(0, 1536, 256):
                read_level_rgb(slide, 0, y, 0, 2048, 256)
    message = str(caught.value)
    assert message.startswith("cut.svs: ") and len(message.splitlines()) == 1
    assert _digest(path) == before


def test_declared_pixel_bomb_is_refused_fast_and_small(tmp_path):
    path = declared_pixels_file(tmp_path / "bomb.tif", 100_000, 100_000)
    assert path.stat().st_size < 320_000
    before = _digest(path)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(SlideReadError) as caught:
        read_slide_info(path)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100_000  # KiB
    assert str(caught.value) == (
        f"bomb.tif declares 100000 x 100000 pixels in only {path.stat().st_size:,} bytes "
        f"({100_000 * 100_000 * 3 / path.stat().st_size:,.0f}:1, real slides stay under 1,000:1): "
        "refused unread; the file is damaged or crafted, upload the scanner's original"
    )
    assert _digest(path) == before


def test_absurd_dimension_is_refused(tmp_path):
    path = declared_pixels_file(tmp_path / "long.tif", 12_000_000, 1024)
    with pytest.raises(SlideReadError) as caught:
        read_slide_info(path)
    assert str(caught.value) == (
        "long.tif declares 12000000 x 1024 pixels, which no slide has (at most 10,000,000 px a side): the file is damaged or not a slide"
    )


def test_slide_without_a_coarse_level_is_refused_with_a_budget(tmp_path):
    # 20,480 x 12,288 px in one level (252 Mpx), a plausible size for its bytes, but no pyramid.
    path = declared_pixels_file(tmp_path / "flat.tif", 20_480, 12_288, noisy=True)
    with pytest.raises(SlideReadError) as caught:
        read_slide_info(path)
    assert str(caught.value) == (
        "flat.tif has no pyramid level below 200 Mpx for a 40x overview (it would decode level 0: 20480 x 12288 px); "
        "re-save it as a pyramidal TIFF (e.g. vips tiffsave --pyramid --tile)"
    )


# --------------------------------------------------------------- settings, checked before any work
@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"tile_core_px": -512},
            "segmentation setting tile_core_px = -512: must be a whole number from 64 to 8192 (model pixels each tile owns)",
        ),
        (
            {"batch_size": 0},
            "segmentation setting batch_size = 0: must be a whole number from 1 to 256 (tiles per segmenter call)",
        ),
        (
            {"tile_margin_px": -1},
            "segmentation setting tile_margin_px = -1: must be a whole number from 0 to 1024 (overlap on each tile side, wider than a nucleus)",
        ),
        (
            {"read_threads": 0},
            "segmentation setting read_threads = 0: must be a whole number from 1 to 64 (threads reading tiles ahead)",
        ),
        (
            {"default_mpp": 0},
            "segmentation setting default_mpp = 0: µm/px must be a number from 0.05 to 20.0 (e.g. 0.25 for 40x, 0.5 for 20x)",
        ),
        (
            {"default_mpp": -0.5},
            "segmentation setting default_mpp = -0.5: µm/px must be a number from 0.05 to 20.0 (e.g. 0.25 for 40x, 0.5 for 20x)",
        ),
        (
            {"default_mpp": float("nan")},
            "segmentation setting default_mpp = nan: µm/px must be a number from 0.05 to 20.0 (e.g. 0.25 for 40x, 0.5 for 20x)",
        ),
        ({"device": "gpu"}, "segmentation setting device = 'gpu': use auto, cpu, cuda or cuda:N (N = GPU number)"),
        (
            {"model": "/nonexistent/model.pt"},
            "segmentation setting model = '/nonexistent/model.pt': no such file; give a TorchScript file path, or default, classical or learned",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_it(settings, message):
    with pytest.raises(ConfigError) as caught:
        validate_segmentation_settings(**settings)
    assert str(caught.value) == message


def test_cuda_device_without_a_gpu_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: cuda is a valid device here")
    with pytest.raises(ConfigError) as caught:
        validate_segmentation_settings(device="cuda")
    assert (
        str(caught.value)
        == "segmentation setting device = 'cuda', but torch sees no CUDA GPU here: use auto or cpu, or run on a GPU worker"
    )


def test_non_torchscript_model_is_named_as_such_not_as_missing_mpp(tmp_path):
    import torch

    checkpoint = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, checkpoint)  # a state_dict, as training scripts save
    before = _digest(checkpoint)
    expected_tail = (
        "weights.pt is not a TorchScript model (a state_dict checkpoint or another file?); "
        "save it with torch.jit.save(torch.jit.script(model), path) and give that file"
    )
    with pytest.raises(ConfigError) as caught:
        validate_segmentation_settings(model=str(checkpoint))
    assert str(caught.value) == f"segmentation setting model: {expected_tail}"
    from wsi_assets.segmentation.torchscript import ModelLoadError, TorchScriptSegmenter

    with pytest.raises(ModelLoadError) as loaded:
        TorchScriptSegmenter(checkpoint, device="cpu")
    assert "not a TorchScript model" in str(loaded.value) and "µm/px" not in str(loaded.value)
    assert _digest(checkpoint) == before


# --------------------------------------------------------------- disks that refuse writes
@contextmanager
def _tmpfs(folder: Path, options: str):
    """A real small or read-only file system at `folder` (needs root with mount rights)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=False, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the /dev/full case still covers ENOSPC")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> None:
    try:
        with open(folder / "filler", "wb") as handle:
            while True:
                handle.write(b"\x00" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC


def test_disk_full_is_one_line_and_not_retried():
    from dagster import Failure

    import wsi_assets.definitions  # noqa: F401  (first import of wsi_assets.defs here silences the chosen preview warnings)
    from wsi_assets.defs.errors import fails_clearly

    @fails_clearly
    def write_to_full_disk():
        with open("/dev/full", "wb") as handle:  # a real device whose every write fails with ENOSPC
            handle.write(b"cells")

    with pytest.raises(Failure) as caught:
        write_to_full_disk()
    assert (
        caught.value.description
        == "no space left on the disk holding /dev/full: free space there (or move the user-files folder), then run again"
    )
    assert caught.value.allow_retries is False


def test_transient_io_error_is_left_to_the_retry_policy():
    import wsi_assets.definitions  # noqa: F401
    from wsi_assets.defs.errors import fails_clearly

    @fails_clearly
    def read_from_a_flaky_share():
        raise OSError(errno.EIO, "Input/output error", "/mnt/share/slide.svs")

    with pytest.raises(OSError) as caught:  # not a Failure: the step's TRANSIENT_RETRY applies
        read_from_a_flaky_share()
    assert caught.value.errno == errno.EIO


def _run_on_refusing_outputs(user_files_root, dagster_instance, small_slide, user, options, fill):
    _, first = run_process_slide(dagster_instance, user_files_root, user, "main", small_slide, "slide")
    assert first.success
    outputs = user_files_root / user / "outputs"
    published = sorted(p for p in outputs.rglob("cells.csv"))
    before = {p: _digest(p) for p in published}
    uploaded = user_files_root / user / "inputs/main/slide.svs"
    input_before = _digest(uploaded)
    snapshot = {p.relative_to(outputs): p.read_bytes() for p in outputs.rglob("*") if p.is_file()}
    mount_point = user_files_root / user / "outputs"
    with _tmpfs(mount_point, options):
        for relative, data in snapshot.items():  # the previous results, now on the refusing disk
            if "ro" in options.split(","):
                break
            (mount_point / relative).parent.mkdir(parents=True, exist_ok=True)
            (mount_point / relative).write_bytes(data)
        if fill:
            _fill(mount_point)
            (mount_point / "filler").unlink()
            _fill(mount_point)
        from wsi_assets.definitions import defs

        rerun = defs.resolve_job_def("process_slide").execute_in_process(
            instance=dagster_instance, partition_key=f"{user}/main/slide", raise_on_error=False
        )
        messages = _step_failures(rerun)
        kept = {p: _digest(p) for p in published if p.exists()}
    assert not rerun.success and messages, "the run should fail on the refusing disk"
    assert _retries(rerun) == 0
    assert _digest(uploaded) == input_before
    assert {p: _digest(p) for p in published} == before  # the real folder under the mount is untouched
    return messages[0], kept


def test_full_output_disk_fails_clearly_and_is_not_retried(user_files_root, dagster_instance, small_slide):
    message, _ = _run_on_refusing_outputs(user_files_root, dagster_instance, small_slide, "fiona", "size=1m", fill=True)
    assert message.startswith(f"no space left on the disk holding {user_files_root}/fiona/outputs/")
    assert message.endswith(": free space there (or move the user-files folder), then run again")


def test_disk_full_while_writing_cells_names_the_output_not_the_slide_being_read(tmp_path, small_slide):
    """As in cell_segmentation: the slide is open for reading while the cell table, a Parquet writer
    that says "no space" without a file name, runs out part-way. The message names the cell table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dagster import Failure

    import wsi_assets.definitions  # noqa: F401
    from wsi_assets.core.atomic import atomic_output
    from wsi_assets.defs.errors import fails_clearly

    @fails_clearly
    def segment(slide_path: Path, cells_path: Path) -> None:
        with slide_path.open("rb"), atomic_output(cells_path) as temporary:
            writer = pq.ParquetWriter(str(temporary), pa.schema([("cell_id", pa.int64())]), compression="none")
            writer.write_table(pa.table({"cell_id": np.arange(200_000)}))
            writer.close()

    with _tmpfs(tmp_path / "outputs", "size=1m") as outputs:
        _fill(outputs)
        os.truncate(outputs / "filler", (outputs / "filler").stat().st_size - 8192)  # a few pages left
        with pytest.raises(Failure) as caught:
            segment(small_slide, outputs / "segmentation" / "cells.parquet")
        left = sorted(p.name for p in (outputs / "segmentation").iterdir())
    expected = f"no space left on the disk holding {outputs}/segmentation/cells.parquet: free space there (or move the user-files folder), then run again"
    assert caught.value.description == expected
    assert left == []  # the partial temporary is gone


def test_read_only_output_folder_fails_clearly_and_is_not_retried(user_files_root, dagster_instance, small_slide):
    message, _ = _run_on_refusing_outputs(user_files_root, dagster_instance, small_slide, "rhea", "ro,size=1m", fill=False)
    assert message.startswith(f"{user_files_root}/rhea/outputs")
    assert message.endswith(" is on a read-only file system: make the outputs folder writable, then run again")


# --------------------------------------------------------------- through Dagster: one line, no retry, results kept
def test_corrupt_tile_run_fails_in_one_line_without_retry_and_keeps_results(
    tmp_path, user_files_root, dagster_instance, tiled_slide
):
    _, good = run_process_slide(dagster_instance, user_files_root, "gil", "main", tiled_slide, "slide")
    assert good.success
    csv = user_files_root / "gil/outputs/main/slide/cells.csv"
    kept = _digest(csv)
    uploaded = user_files_root / "gil/inputs/main/slide.svs"
    damaged = tmp_path / "slide.svs"
    damaged.write_bytes(tiled_slide.read_bytes())
    corrupt_level0_tiles(damaged)
    uploaded.write_bytes(damaged.read_bytes())
    before = _digest(uploaded)
    from wsi_assets.definitions import defs

    rerun = defs.resolve_job_def("process_slide").execute_in_process(
        instance=dagster_instance, partition_key="gil/main/slide", raise_on_error=False
    )
    assert not rerun.success
    [message] = _step_failures(rerun)
    assert message.startswith("slide.svs: cannot decode the region at level-0 x ") and message.endswith(
        "; re-export or re-upload the slide"
    )
    assert _retries(rerun) == 0  # cell_segmentation has TRANSIENT_RETRY; a damaged tile is not transient
    assert _digest(uploaded) == before
    assert _digest(csv) == kept


def test_bad_run_config_fails_before_any_work_naming_the_field(user_files_root, dagster_instance, small_slide):
    _, good = run_process_slide(dagster_instance, user_files_root, "hana", "main", small_slide, "slide")
    assert good.success
    csv = user_files_root / "hana/outputs/main/slide/cells.csv"
    kept = _digest(csv)
    from wsi_assets.definitions import defs

    config = {"resources": {"segmentation": {"config": {"batch_size": 0}}}}
    rerun = defs.resolve_job_def("process_slide").execute_in_process(
        instance=dagster_instance, partition_key="hana/main/slide", run_config=config, raise_on_error=False
    )
    assert not rerun.success
    logs = "\n".join(r.user_message for r in dagster_instance.all_logs(rerun.run_id))
    assert (
        "segmentation setting batch_size = 0: must be a whole number from 1 to 256 (tiles per segmenter call)"
        in str(
            [
                e.event_specific_data
                for e in rerun.all_events
                if e.event_type_value in ("RESOURCE_INIT_FAILURE", "STEP_FAILURE", "RUN_FAILURE")
            ]
        )
        or "batch_size = 0" in logs
    )
    assert not [e for e in rerun.all_events if e.event_type_value == "STEP_SUCCESS"]  # nothing ran
    assert _retries(rerun) == 0
    assert _digest(csv) == kept
