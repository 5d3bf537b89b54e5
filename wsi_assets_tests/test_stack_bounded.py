"""Stacks whose planes are larger than a pass may hold: every pass reads Y/X tiles, files that cannot be read in parts are refused first, and OME-XML that disagrees with the planes is refused."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import cv2
import numpy as np
import pytest
import tifffile
import zarr

from wsi_assets.stacks import ome_zarr, storage
from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.ome_zarr import open_level, write_ome_zarr
from wsi_assets.stacks.pca import channel_pca
from wsi_assets.stacks.planes import TiffPlanes
from wsi_assets.stacks.previews import stack_previews
from wsi_assets.stacks.slices import write_slice_png
from wsi_assets.stacks.stats import channel_stats
from wsi_assets.stacks.synthetic import as_array, large_plane_values
from wsi_assets_tests import stack_files
from wsi_assets_tests.stack_files import SMALL

SIDE = 6144  # a 36 MiB uint8 plane, against a 4 MiB budget
BUDGET = 4 * 2**20
# What one pass may hold (its own block budget, a few MiB here, and zarr's buffers): half a plane at most, whereas
# reading a whole plane holds one plane at least.
MOST_HELD = SIDE * SIDE // 2


def traced_peak(call):
    """(result, peak bytes allocated while `call` ran): numpy, zarr and tifffile buffers are all traced."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A 2-channel 6144² tiled OME-TIFF (under 1 MB on disk), its copy made within a 4 MiB budget, and the copy's peak."""
    folder = tmp_path_factory.mktemp("large")
    path = stack_files.large_plane_stack(folder, SIDE)
    info = read_stack_info(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ome_zarr, "BLOCK_BUDGET_BYTES", BUDGET)
        _, peak = traced_peak(lambda: write_ome_zarr(path, info, folder / "stack.ome.zarr"))
    return path, info, folder / "stack.ome.zarr", peak


def test_ome_zarr_copy_of_a_large_plane_holds_tiles_not_planes(large):
    path, info, folder, peak = large
    assert path.stat().st_size < 2**20 and info.shape == (1, 2, 1, SIDE, SIDE)
    assert peak < MOST_HELD, f"the copy held {peak / 2**20:.1f} MiB for {SIDE}² planes"
    level0 = open_level(folder, 0)
    for ys, xs in [(slice(0, 700), slice(0, 1100)), (slice(5000, SIDE), slice(2500, SIDE))]:
        np.testing.assert_array_equal(level0[0, 1, 0, ys, xs], large_plane_values(SIDE, 1, ys, xs))
    assert open_level(folder, 1).shape[3:] == (SIDE // 2, SIDE // 2)


def test_passes_over_the_copy_hold_tiles_not_planes(large, tmp_path, monkeypatch):
    _, info, folder, _ = large
    monkeypatch.setattr(ome_zarr, "BLOCK_BUDGET_BYTES", BUDGET)
    stats, peak = traced_peak(lambda: channel_stats(open_level(folder, 0), info.channel_names))
    assert peak < MOST_HELD and stats["rows"][0]["count"] == SIDE * SIDE and stats["rows"][0]["max"] == SIDE // 512 - 1
    pca, peak = traced_peak(lambda: channel_pca(open_level(folder, 0)))
    assert peak < MOST_HELD and pca.n_voxels == SIDE * SIDE
    previews, peak = traced_peak(lambda: stack_previews(folder, info.channel_names))
    assert peak < MOST_HELD and previews["composite MIP"].shape[:2] == (384, 384)
    (path, written, how), peak = traced_peak(lambda: write_slice_png(folder, 0, 0, 1, tmp_path / "slice.png"))
    assert peak < MOST_HELD, f"the slice held {peak / 2**20:.1f} MiB"
    assert written.shape == (SIDE, SIDE) and written.preview.shape == (768, 768) and how == "values unchanged"
    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png[:1024, :1024], large_plane_values(SIDE, 1, slice(0, 1024), slice(0, 1024)))
    assert png.shape == (SIDE, SIDE) and int(png.sum()) == int(large_plane_values(SIDE, 1, slice(0, SIDE), slice(0, SIDE)).sum())


def test_tiles_of_one_plane_cover_it_once(large):
    """The helper later passes (nuclei per plane) read a plane with: tiles in order, each the stored values."""
    path, info, _, _ = large
    with TiffPlanes(path, info) as planes:
        seen = [(y0, x0, block.shape) for y0, x0, block in planes.tiles(0, 0, 0, 1, (2048, 4096))]
        y0, x0, block = next(iter(planes.tiles(0, 1, 0, 1, (2048, 4096))))
    assert seen[:2] == [(0, 0, (1, 2048, 4096)), (0, 4096, (1, 2048, SIDE - 4096))] and len(seen) == 6
    np.testing.assert_array_equal(block[0], large_plane_values(SIDE, 1, slice(0, 2048), slice(0, 4096)))


def test_tiled_copy_equals_the_stack(tmp_path, monkeypatch):
    monkeypatch.setattr(ome_zarr, "BLOCK_BUDGET_BYTES", 2**20)  # 512² tiles of one Z plane for 600×700 planes
    spec = replace(SMALL, t=1, c=2, z=3)
    path = stack_files.ome_stack(tmp_path, spec)
    info = read_stack_info(path)
    summary = write_ome_zarr(path, info, tmp_path / "copy.ome.zarr")
    data = as_array(spec)
    group = zarr.open_group(str(tmp_path / "copy.ome.zarr"), mode="r")
    assert summary.chunks == [1, 1, 1, 512, 512]
    np.testing.assert_array_equal(group["0"][:], data)
    expected = np.rint(data.reshape(1, 2, 3, 300, 2, 350, 2).astype(np.float64).mean(axis=(4, 6)))
    np.testing.assert_allclose(group["1"][:], expected, atol=1)
    below = group["1"][:].reshape(1, 2, 3, 150, 2, 175, 2).astype(np.float64)
    np.testing.assert_array_equal(group["2"][:], np.rint(below.mean(axis=(4, 6))).astype(np.uint16))


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_slice_png_written_in_bands_equals_the_plane(tmp_path, monkeypatch, dtype):
    rng = np.random.default_rng(4)
    data = (rng.integers(0, 256, (1, 1, 2, 1500, 300)) if dtype == "uint8" else rng.normal(0, 5, (1, 1, 2, 1500, 300))).astype(
        dtype
    )
    group = zarr.open_group(str(tmp_path / "s.ome.zarr"), mode="w", zarr_format=3)
    group.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "0"}]}]}
    group.create_array("0", shape=data.shape, chunks=(1, 1, 1, 512, 300), dtype=dtype)[:] = data
    monkeypatch.setattr(ome_zarr, "BLOCK_BUDGET_BYTES", 3 * 300 * data.itemsize * 700)  # bands of 512 rows, the chunk's height
    path, written, how = write_slice_png(tmp_path / "s.ome.zarr", 0, 1, 0, tmp_path / "slice.png")
    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if dtype == "uint8":
        assert png.dtype == np.uint8 and how == "values unchanged"
        np.testing.assert_array_equal(png, data[0, 0, 1])
    else:
        plane = data[0, 0, 1].astype(np.float64)
        low, high = plane.min(), plane.max()
        assert png.dtype == np.uint16 and how.startswith("float32 stretched from")
        np.testing.assert_array_equal(png, np.rint((plane - low) / (high - low) * 65535).astype(np.uint16))
    assert written.shape == (1500, 300)


@pytest.mark.parametrize("write", [stack_files.imagej_stack, stack_files.ome_stack], ids=["imagej-TZC", "ome-TZC"])
def test_uncompressed_pages_read_raw_land_in_their_t_c_z(tmp_path, write):
    spec = replace(SMALL, t=2, c=3, z=2, y=40, x=56)
    path = write(tmp_path, spec)
    info = read_stack_info(path)
    with TiffPlanes(path, info) as planes:
        assert planes.chunk_bytes == 0, "uncompressed strips are read from the file, not decoded"
    write_ome_zarr(path, info, tmp_path / "copy.ome.zarr")
    np.testing.assert_array_equal(open_level(tmp_path / "copy.ome.zarr", 0)[:], as_array(spec))


def strips(folder, *, compression, byteorder="<"):
    """Two 700×300 uint16 planes, each stored as one strip, and their values."""
    data = (np.arange(2 * 700 * 300, dtype=np.uint32) % 65521).astype(np.uint16).reshape(2, 700, 300)
    path = folder / f"strips-{compression}-{byteorder == '<'}.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        compression=compression,
        rowsperstrip=700,
        byteorder=byteorder,
        metadata={"axes": "ZYX"},
    )
    return path, data


def test_compressed_strips_larger_than_a_read_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "MAX_STORED_CHUNK_BYTES", 100_000)  # a 700×300 uint16 strip decodes to 420,000 bytes
    path, _ = strips(tmp_path, compression="zlib")
    with pytest.raises(StackReadError) as caught:
        read_stack_info(path)
    message = str(caught.value)
    assert message.startswith(f"{path.name}: its planes are stored in compressed strips of 300×700 px") and "\n" not in message
    assert "save it tiled" in message


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_uncompressed_strips_larger_than_a_read_are_read_row_by_row(tmp_path, monkeypatch, byteorder):
    monkeypatch.setattr(storage, "MAX_STORED_CHUNK_BYTES", 100_000)
    monkeypatch.setattr(ome_zarr, "BLOCK_BUDGET_BYTES", 3 * 2 * 512 * 300)
    path, data = strips(tmp_path, compression=None, byteorder=byteorder)
    info = read_stack_info(path)
    with TiffPlanes(path, info) as planes:
        np.testing.assert_array_equal(planes.region(0, 0, 1, 2, slice(650, 700), slice(10, 20))[0], data[1, 650:700, 10:20])
    write_ome_zarr(path, info, tmp_path / "copy.ome.zarr")
    np.testing.assert_array_equal(open_level(tmp_path / "copy.ome.zarr", 0)[0, 0], data)


def test_compressed_strips_within_the_limit_are_copied_in_bands_of_whole_strips(tmp_path):
    path, data = strips(tmp_path, compression="zlib")
    info = read_stack_info(path)
    with TiffPlanes(path, info) as planes:
        assert (planes.rows_decoded_together, planes.chunk_bytes) == (700, 700 * 300 * 2)
        assert ome_zarr.source_tile(info, 2, planes, ome_zarr.BLOCK_BUDGET_BYTES)[0] == 700, "a band never cuts a strip"
    write_ome_zarr(path, info, tmp_path / "copy.ome.zarr")
    np.testing.assert_array_equal(open_level(tmp_path / "copy.ome.zarr", 0)[0, 0], data)


def ome_with_description(folder, description: str):
    path = folder / "claims.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 64, 64), np.uint8), description=description, metadata=None, photometric="minisblack")
    return path


@pytest.fixture(scope="module")
def two_plane_xml(tmp_path_factory):
    path = tmp_path_factory.mktemp("xml") / "two.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 64, 64), np.uint8), ome=True, photometric="minisblack", metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        xml = tif.pages.first.description
    assert xml.count('SizeZ="2"') == 1
    return path, xml


@pytest.mark.parametrize(
    "claim, expected",
    [
        (
            'SizeZ="1000000"',
            "inconsistent OME metadata: the OME-XML does not match the file's planes (OME series is missing 999998 frames",
        ),
        (
            'SizeZ="1"',
            "inconsistent OME metadata: the OME-XML does not match the file's planes (OME series expected 1 frames, got 2)",
        ),
    ],
)
def test_ome_xml_that_disagrees_with_the_planes_is_refused(tmp_path, two_plane_xml, claim, expected):
    path = ome_with_description(tmp_path, two_plane_xml[1].replace('SizeZ="2"', claim))
    with pytest.raises(StackReadError) as caught:
        read_stack_info(path)
    assert str(caught.value).startswith(f"{path.name}: {expected}") and "\n" not in str(caught.value)


def test_ome_xml_cut_short_is_refused_not_guessed(tmp_path, two_plane_xml):
    """An in-place edit that lengthens the XML cuts its end off: tifffile then sees no OME, and the stack was read with guessed axes."""
    source, _ = two_plane_xml
    path = tmp_path / "edited.ome.tif"
    path.write_bytes(source.read_bytes().replace(b'SizeZ="2"', b'SizeZ="1000000"'))
    with pytest.raises(StackReadError, match=r"^edited\.ome\.tif: damaged OME metadata: its OME-XML is cut short"):
        read_stack_info(path)


def test_float_percentiles_come_from_a_strided_sample_of_every_voxel(tmp_path, monkeypatch):
    import wsi_assets.stacks.stats as stats_module

    rng = np.random.default_rng(7)
    data = rng.uniform(0, 1000, (2, 1, 4, 64, 64)).astype(np.float32)
    array = zarr.create_array(str(tmp_path / "f.zarr"), shape=data.shape, chunks=(1, 1, 2, 32, 32), dtype="float32")
    array[:] = data
    monkeypatch.setattr(stats_module, "PERCENTILE_SAMPLE", 1000)
    stats = channel_stats(array, ("a",))
    everything, first = stats["rows"][0], stats["rows"][1]
    assert stats["percentiles_exact"] is False and everything["count"] == data.size
    assert everything["mean"] == pytest.approx(data.astype(np.float64).mean(), rel=1e-9)
    for q in stats["percentiles"]:
        assert first[f"p{q:g}"] == pytest.approx(np.percentile(data[0], q), abs=30)
        assert everything[f"p{q:g}"] == pytest.approx(np.percentile(data, q), abs=30)
