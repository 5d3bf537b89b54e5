"""How a stack's OME-Zarr copy first looks in a viewer: display windows measured from the data, colours from channel names.

napari, Fiji and QuPath read `omero.channels[]`; napari itself is checked by
benchmarks/napari_stack_check.py (not a test requirement: Qt is heavy).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from wsi_assets.stacks import display_windows
from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.channel_colours import channel_active, channel_colours, named_colour
from wsi_assets.stacks.display_windows import DisplayWindows
from wsi_assets.stacks.ome_zarr import open_level, write_ome_zarr
from wsi_assets.stacks.previews import stack_previews, windowed
from wsi_assets.stacks.stats import channel_stats
from wsi_assets.stacks.synthetic import StackSpec, write_ome_tiff

SPEC = StackSpec(t=2, c=3, z=5, y=150, x=200, seed=4, physical_size_um=(1.0, 0.3, 0.3), channel_names=("DAPI", "GFP", "mCherry"))


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("display")
    path = write_ome_tiff(folder / "cells.ome.tif", SPEC)
    info = read_stack_info(path)
    write_ome_zarr(path, info, folder / "stack.ome.zarr")
    return info, folder / "stack.ome.zarr"


def omero_channels(folder) -> list[dict]:
    return zarr.open_group(str(folder), mode="r").attrs["ome"]["omero"]["channels"]


@pytest.mark.parametrize(
    ("name", "colour"),
    [
        ("DAPI", "0000FF"),
        ("hoechst 33342", "0000FF"),
        ("EGFP", "00FF00"),
        ("FITC", "00FF00"),
        ("Alexa Fluor 488", "00FF00"),
        ("mCherry", "FF0000"),
        ("TagRFP", "FF0000"),
        ("Cy3", "FF0000"),
        ("TRITC", "FF0000"),
        ("AF568", "FF0000"),
        ("Alexa 594", "FF0000"),
        ("AF555", "FF0000"),
        ("Cy5", "FF00FF"),
        ("Alexa Fluor 647", "FF00FF"),
        ("far-red", "FF00FF"),
        ("Far Red", "FF00FF"),
        ("ch0", None),
        ("brightfield", None),
    ],
)
def test_channel_names_give_conventional_colours(name, colour):
    assert named_colour(name) == colour


def test_unknown_and_repeated_names_get_distinct_free_colours():
    assert channel_colours(("DAPI", "GFP", "mCherry")) == ["0000FF", "00FF00", "FF0000"]
    # An unknown channel never takes a colour a named one has: here not GFP's green.
    assert channel_colours(("membrane", "GFP")) == ["FF00FF", "00FF00"]
    colours = channel_colours(("GFP", "FITC", "ch2", "ch3"))
    assert colours[0] == "00FF00" and len(set(colours)) == 4
    assert channel_colours(("ch0",)) == ["FFFFFF"] and channel_colours(("DAPI",)) == ["0000FF"]
    assert len(channel_colours([f"ch{i}" for i in range(12)])) == 12


def test_only_the_first_four_channels_start_visible_when_there_are_more():
    assert channel_active(4) == [True] * 4
    assert channel_active(6) == [True] * 4 + [False] * 2


def test_copy_windows_are_the_channels_p1_p99_not_the_dtype_range(copy):
    info, folder = copy
    stats = channel_stats(open_level(folder, 0), info.channel_names)
    rows = [row for row in stats["rows"] if row["t"] == "all"]
    channels = omero_channels(folder)
    for channel, row in zip(channels, rows):
        window = channel["window"]
        # The old windows were the dtype's range, 0..65535, over values below 4,000: every channel looked black.
        assert row["min"] <= window["start"] < window["end"] <= row["max"] < 4000
        assert (window["start"], window["end"]) == (row["p1"], row["p99"])
        assert (window["min"], window["max"]) == (0.0, 65535.0)
    assert [c["label"] for c in channels] == ["DAPI", "GFP", "mCherry"]
    assert [c["color"] for c in channels] == ["0000FF", "00FF00", "FF0000"]
    assert all(c["active"] for c in channels)


def test_copy_metadata_is_valid_ome_zarr(copy):
    from ome_zarr_models.common.omero import Omero
    from ome_zarr_models.v05.image import Image

    _, folder = copy
    group = zarr.open_group(str(folder), mode="r")
    image = Image.from_zarr(group)
    assert len(image.attributes.ome.multiscales[0].datasets) == 1 + (max(SPEC.y, SPEC.x) > 256)
    omero = Omero.model_validate(group.attrs["ome"]["omero"])
    assert [c.window.end for c in omero.channels] == [c["window"]["end"] for c in omero_channels(folder)]
    broken = {"channels": [{**omero_channels(folder)[0], "color": "blue"}]}
    with pytest.raises(ValueError, match="color"):
        Omero.model_validate(broken)


def test_previews_show_each_channel_through_its_window_in_its_colour(copy):
    info, folder = copy
    previews = stack_previews(folder, info.channel_names)
    level = open_level(folder, 0)
    for c, channel in enumerate(omero_channels(folder)):
        window = channel["window"]
        expected = windowed(np.asarray(level[0, c, SPEC.z // 2]), window["start"], window["end"])
        np.testing.assert_array_equal(previews[f"{channel['label']} mid-Z"], expected)
        assert (expected == 0).mean() < 0.05 and (expected == 255).mean() < 0.05
    composite = previews["composite MIP"]
    # mCherry red, GFP green, DAPI blue: each colour component is one channel's projection.
    for component, name in enumerate(("mCherry", "GFP", "DAPI")):
        np.testing.assert_array_equal(composite[..., component], previews[f"{name} MIP"])


def test_windows_of_a_channel_larger_than_the_sample_are_close_to_exact(monkeypatch):
    monkeypatch.setattr(display_windows, "WINDOW_SAMPLE", 5_000)
    rng = np.random.default_rng(2)
    data = rng.gamma(2.0, 300.0, (2, 8, 64, 64)).astype(np.uint16)  # one channel: t, z, y, x
    windows = DisplayWindows(np.uint16, 1, data.size)
    for t in range(2):
        for z0 in range(0, 8, 3):
            windows.add(0, data[t, z0 : z0 + 3])
    window = windows.windows()[0]
    exact = np.percentile(data, (1, 99))
    spread = exact[1] - exact[0]
    assert abs(window["start"] - exact[0]) < 0.02 * spread and abs(window["end"] - exact[1]) < 0.02 * spread


def test_float_windows_use_the_measured_range_and_are_never_empty():
    values = np.linspace(-2.0, 6.0, 1000, dtype=np.float32).reshape(1, 10, 100)
    values[0, 5, 50] = np.nan  # a missing value is ignored, not propagated
    windows = DisplayWindows(np.float32, 2, values.size)
    windows.add(0, values)
    windows.add(1, np.full((1, 10, 100), 7.0, np.float32))
    first, constant = windows.windows()
    assert (first["min"], first["max"]) == (-2.0, 6.0)
    assert first["start"] == pytest.approx(np.nanpercentile(values, 1)) and first["end"] == pytest.approx(
        np.nanpercentile(values, 99)
    )
    assert constant["start"] < constant["end"] and constant["min"] <= constant["start"] and constant["end"] <= constant["max"]


def test_float_stack_copy_windows_span_its_measured_range(tmp_path):
    import tifffile

    data = np.random.default_rng(0).normal(0.5, 0.1, (1, 2, 2, 40, 50)).astype(np.float32)
    data[0, 1] *= 1000
    path = tmp_path / "float.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCZYX", "Channel": {"Name": ["Hoechst", "Alexa 647"]}})
    write_ome_zarr(path, read_stack_info(path), tmp_path / "float.ome.zarr")
    channels = omero_channels(tmp_path / "float.ome.zarr")
    assert [c["color"] for c in channels] == ["0000FF", "FF00FF"]
    for c, channel in enumerate(channels):
        window, values = channel["window"], data[:, c]
        assert (window["min"], window["max"]) == (float(values.min()), float(values.max()))
        assert [window["start"], window["end"]] == pytest.approx(np.percentile(values, (1, 99)))
