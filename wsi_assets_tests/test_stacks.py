"""Stacks without Dagster: metadata (OME, ImageJ, guessed), the OME-Zarr copy, statistics, PCA, slices and bad input."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import zarr

from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.errors import StackReadError
from wsi_assets.stacks.ome_zarr import open_level, write_ome_zarr
from wsi_assets.stacks.pca import channel_pca, component_images
from wsi_assets.stacks.slices import write_slice_png
from wsi_assets.stacks.stats import channel_stats
from wsi_assets.stacks.synthetic import as_array
from wsi_assets_tests import stack_files
from wsi_assets_tests.stack_files import SMALL


@pytest.fixture(scope="module")
def ome(tmp_path_factory):
    """The small OME-TIFF, its array, and its OME-Zarr copy."""
    folder = tmp_path_factory.mktemp("stack")
    path = stack_files.ome_stack(folder)
    info = read_stack_info(path)
    write_ome_zarr(path, info, folder / "stack.ome.zarr")
    return path, info, as_array(SMALL), folder / "stack.ome.zarr"


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ome_metadata(ome):
    _, info, data, _ = ome
    assert info.axes_source == "ome" and info.axes == "TCZYX"
    assert info.shape == data.shape == (2, 3, 5, 600, 700) and info.dtype == "uint16"
    assert info.physical_size_um == {"z": 2.0, "y": 0.5, "x": 0.5}
    assert info.time_step_s == 30.0
    assert info.channel_names == ("DAPI", "GFP", "RFP")


def test_imagej_metadata(tmp_path):
    info = read_stack_info(stack_files.imagej_stack(tmp_path))
    assert info.axes_source == "imagej" and info.shape == SMALL.shape and info.file_axes == "TZCYX"
    assert info.physical_size_um == pytest.approx({"z": 2.0, "y": 0.5, "x": 0.5})
    assert info.time_step_s == 30.0


def test_plain_multipage_tiff_axes_are_guessed_as_z(tmp_path):
    info = read_stack_info(stack_files.plain_stack(tmp_path, z=6))
    assert info.axes_source == "guessed"
    assert info.shape == (1, 1, 6, 64, 80)
    assert info.physical_size_um == {"z": None, "y": None, "x": None}


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d, ome: stack_files.two_unnamed_axes(d), "cannot tell which of its page axes"),
        (lambda d, ome: stack_files.image_2d(d), "a 2D image"),
        (lambda d, ome: stack_files.truncated(ome, d / "cut.ome.tif"), "truncated"),
        (lambda d, ome: stack_files.inconsistent_ome(ome, d / "bad.ome.tif"), "inconsistent OME metadata"),
        (lambda d, ome: (d / "junk.tif").write_bytes(b"not a tiff" * 50) and d / "junk.tif", "not a TIFF stack"),
    ],
    ids=["t-or-z", "2d", "truncated", "inconsistent-ome", "not-tiff"],
)
def test_bad_stacks_give_one_line(tmp_path, ome, make, expected):
    path = make(tmp_path, ome[0])
    before = digest(path)
    with pytest.raises(StackReadError) as caught:
        read_stack_info(path)
    message = str(caught.value)
    assert expected in message and "\n" not in message and path.name in message
    assert digest(path) == before


def test_ome_zarr_copy_is_valid_ngff_and_equals_the_stack(ome):
    _, _, data, folder = ome
    group = zarr.open_group(str(folder), mode="r")
    assert group.metadata.zarr_format == 3
    meta = group.attrs["ome"]
    assert meta["version"] == "0.5"
    multiscale = meta["multiscales"][0]
    assert [(a["name"], a["type"]) for a in multiscale["axes"]] == [
        ("t", "time"),
        ("c", "channel"),
        ("z", "space"),
        ("y", "space"),
        ("x", "space"),
    ]
    datasets = multiscale["datasets"]
    assert len(datasets) >= 2
    for level, dataset in enumerate(datasets):
        array = group[dataset["path"]]
        scale = dataset["coordinateTransformations"][0]
        assert scale["type"] == "scale" and len(scale["scale"]) == 5
        assert scale["scale"][3] == pytest.approx(0.5 * data.shape[3] / array.shape[3])
        assert array.shape[:3] == data.shape[:3] and array.chunks[:2] == (1, 1) and array.chunks[2] <= 16
        assert max(array.chunks[3:]) <= 512
    assert [c["label"] for c in meta["omero"]["channels"]] == ["DAPI", "GFP", "RFP"]
    np.testing.assert_array_equal(group["0"][:], data)
    expected = np.rint(data[..., :600, :700].reshape(2, 3, 5, 300, 2, 350, 2).astype(np.float64).mean(axis=(4, 6)))
    np.testing.assert_allclose(group["1"][:], expected, atol=1)


def test_ome_zarr_opens_lazily_in_dask(ome):
    da = pytest.importorskip("dask.array")
    _, _, data, folder = ome
    lazy = da.from_zarr(str(folder), component="0")
    assert lazy.chunksize[:3] == (1, 1, 5)
    np.testing.assert_array_equal(lazy[1, 2].max(axis=0).compute(), data[1, 2].max(axis=0))


def test_channel_stats_equal_numpy(ome):
    _, info, data, folder = ome
    stats = channel_stats(open_level(folder, 0), info.channel_names)
    assert stats["percentiles_exact"] is True
    rows = {(row["c"], row["t"]): row for row in stats["rows"]}
    assert len(rows) == 3 * (2 + 1)
    for (c, t), row in rows.items():
        values = data[:, c] if t == "all" else data[t, c]
        assert row["count"] == values.size
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(values.std(), rel=1e-9)
        assert (row["min"], row["max"]) == (values.min(), values.max())
        assert [row[f"p{q:g}"] for q in stats["percentiles"]] == pytest.approx(
            np.percentile(values, stats["percentiles"]), abs=1e-9
        )


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
def test_channel_stats_other_dtypes(tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = (rng.normal(0, 300, (2, 2, 3, 40, 50)) if dtype != "uint8" else rng.integers(0, 256, (2, 2, 3, 40, 50))).astype(dtype)
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(1, 1, 2, 16, 16), dtype=dtype)
    array[:] = data
    stats = channel_stats(array, ("a", "b"))
    row = stats["rows"][1]
    assert stats["percentiles_exact"] is (dtype != "float32")
    assert row["mean"] == pytest.approx(data[:, 1].astype(np.float64).mean(), rel=1e-6, abs=1e-6)
    assert row["std"] == pytest.approx(data[:, 1].astype(np.float64).std(), rel=1e-6)
    assert row["min"] == data[:, 1].min() and row["max"] == data[:, 1].max()


def test_pca_equals_numpy_and_scikit_learn(ome, monkeypatch):
    # scikit-learn sets these on import (setdefault): set them here so the test leaves os.environ as it found it.
    monkeypatch.setenv("KMP_DUPLICATE_LIB_OK", "True")
    monkeypatch.setenv("KMP_INIT_AT_FORK", "FALSE")
    _, _, data, folder = ome
    pca = channel_pca(open_level(folder, 0))
    voxels = np.moveaxis(data, 1, -1).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(pca.covariance, np.cov(voxels, rowvar=False), rtol=1e-9)
    np.testing.assert_allclose(pca.explained_variance, np.linalg.eigvalsh(np.cov(voxels, rowvar=False))[::-1], rtol=1e-9)
    sklearn = pytest.importorskip("sklearn.decomposition")
    reference = sklearn.PCA().fit(voxels)
    np.testing.assert_allclose(pca.explained_variance, reference.explained_variance_, rtol=1e-7)
    np.testing.assert_allclose(pca.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-7)
    np.testing.assert_allclose(np.abs(pca.components), np.abs(reference.components_), atol=1e-6)
    # Three channels mixed from two known sources: two components carry nearly everything.
    assert pca.explained_variance_ratio[: SMALL.n_sources].sum() > 0.999
    images = component_images(channel_pca(open_level(folder, 0), 2), data[0, :, 2])
    assert images.shape == (2, 600, 700)
    centred = data[0, :, 2].reshape(3, -1).T - pca.mean
    np.testing.assert_allclose(images[0].ravel(), centred @ pca.components[0], rtol=1e-4, atol=1e-2)


def test_pca_n_components_out_of_range(ome):
    with pytest.raises(StackReadError, match="n_components=4 is out of range: this stack has 3 channels"):
        channel_pca(open_level(ome[3], 0), 4)


def test_slice_png_equals_the_plane(ome, tmp_path):
    _, _, data, folder = ome
    path, _, how = write_slice_png(folder, 1, 3, 2, tmp_path / "slice.png")
    read_back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert read_back.dtype == np.uint16 and how == "values unchanged"
    np.testing.assert_array_equal(read_back, data[1, 2, 3])


@pytest.mark.parametrize(
    "t, z, c, expected",
    [
        (2, 0, 0, "t=2 is out of range: this stack has T=2 (t from 0 to 1)"),
        (0, 5, 0, "z=5 is out of range"),
        (0, 0, -1, "c=-1 is out of range"),
    ],
)
def test_out_of_range_slice_is_refused(ome, tmp_path, t, z, c, expected):
    with pytest.raises(StackReadError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        write_slice_png(ome[3], t, z, c, tmp_path / "slice.png")
    assert not (tmp_path / "slice.png").exists()


def test_pca_with_many_channels_reads_fewer_planes_at_once(tmp_path, monkeypatch):
    import wsi_assets.stacks.pca as pca_module

    monkeypatch.setattr(pca_module, "PCA_BLOCK_BYTES", 1)  # one Z plane of all channels at a time
    rng = np.random.default_rng(2)
    data = rng.integers(0, 4000, (2, 6, 5, 40, 50)).astype(np.uint16)
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(1, 1, 4, 16, 16), dtype="uint16")
    array[:] = data
    voxels = np.moveaxis(data, 1, -1).reshape(-1, 6).astype(np.float64)
    found = channel_pca(array, 3)
    np.testing.assert_allclose(found.covariance, np.cov(voxels, rowvar=False), rtol=1e-9)
    assert found.n_voxels == voxels.shape[0] and found.components.shape == (3, 6)


def test_an_ome_tiff_with_several_images_reads_the_first_and_says_how_many(tmp_path):
    import tifffile

    with tifffile.TiffWriter(tmp_path / "multi.ome.tif", ome=True) as writer:
        writer.write(np.zeros((3, 32, 32), np.uint16), metadata={"axes": "ZYX"})
        writer.write(np.ones((2, 16, 16), np.uint16), metadata={"axes": "ZYX"})
    info = read_stack_info(tmp_path / "multi.ome.tif")
    assert (info.shape, info.images_in_file, info.axes_source) == ((1, 1, 3, 32, 32), 2, "ome")
