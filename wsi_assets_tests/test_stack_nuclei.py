"""Nuclei in stacks: the nuclear channel, 2-D planes linked in 3-D, NGFF labels, nuclei.parquet and tracks.

The stacks are the package's synthetic moving nuclei (known ids, centroids, GFP levels, tracks);
planes are segmented by a fixed threshold (nuclei there never touch), so these tests measure the
stack machinery, not a model. Labels are read back with zarr, ome-zarr and ome-zarr-models;
the table with pandas/pyarrow.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr
from scipy import ndimage as ndi

from wsi_assets.slides.errors import SlideSettingsError
from wsi_assets.stacks.axes import read_stack_info
from wsi_assets.stacks.nuclear_channel import choose_nuclear_channel
from wsi_assets.stacks.nuclei import segment_stack_nuclei
from wsi_assets.stacks.nuclei_3d import count_overlaps, stitch_volume, z_step_too_long
from wsi_assets.stacks.nuclei_planes import segment_block
from wsi_assets.stacks.ome_zarr import write_ome_zarr
from wsi_assets.stacks.ome_zarr_labels import open_label_level
from wsi_assets.stacks.synthetic_nuclei import (
    NucleiStackSpec,
    channel_planes,
    truth_labels,
    truth_plane,
    truth_table,
    write_nuclei_stack,
)
from wsi_assets.stacks.track_scoring import correct_link_fraction
from wsi_assets.stacks.tracking import link

SPEC = NucleiStackSpec(t=3, z=12, y=200, x=300, n_nuclei=20, seed=4)  # two pyramid levels


def threshold_segmenter(gray: np.ndarray) -> np.ndarray:
    return ndi.label(gray > 600)[0]


def per_plane_ids(volume: np.ndarray) -> np.ndarray:
    """Each plane's objects numbered on from the last plane's, as a 2-D segmenter would give them."""
    out, next_id = np.zeros_like(volume), 1
    for z, plane in enumerate(volume):
        labels, n = ndi.label(plane > 0)
        out[z] = np.where(labels > 0, labels + next_id - 1, 0)
        next_id += n
    return out


@pytest.fixture(scope="module")
def nuclei_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nuclei_stack")
    path = write_nuclei_stack(folder / "moving.ome.tif", SPEC)
    info = read_stack_info(path)
    write_ome_zarr(path, info, folder / "stack.ome.zarr")
    summary = segment_stack_nuclei(folder / "stack.ome.zarr", info, 0, threshold_segmenter, folder / "nuclei.parquet")
    return folder, info, summary


# ------------------------------------------------------------------- the nuclear channel


def test_nuclear_channel_by_name_by_setting_or_guessed(tmp_path):
    assert choose_nuclear_channel(("GFP", "hoechst 33342", "RFP")).index == 1
    assert choose_nuclear_channel(("Cy5", "H2B-mCherry")).source == "channel name"
    guessed = choose_nuclear_channel(("ch0", "ch1"))
    assert (guessed.index, guessed.guessed) == (0, True)
    sidecar, branch = tmp_path / "inputs" / "main" / "cells.yaml", tmp_path / "inputs" / "main" / "branch.yaml"
    sidecar.parent.mkdir(parents=True)
    branch.write_text("nuclear_channel: gfp\n")
    stated = choose_nuclear_channel(("DAPI", "GFP"), sidecar, branch)
    assert (stated.index, stated.source) == (1, "branch.yaml")  # a stated channel wins over a DAPI name
    sidecar.write_text("nuclear_channel: 0\n")
    assert choose_nuclear_channel(("DAPI", "GFP"), sidecar, branch).source == "sidecar cells.yaml"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("3", "nuclear_channel = 3 is not a channel of this stack (it has 2: 0: DAPI, 1: GFP)"),
        (
            "Hoechst",
            "nuclear_channel = 'Hoechst' is not a channel name of this stack (0: DAPI, 1: GFP); give the channel's index instead",
        ),
        ("-1", "nuclear_channel = -1 must be a channel index from 0 or a channel name"),
    ],
)
def test_a_bad_nuclear_channel_is_one_line_naming_the_file(tmp_path, value, expected):
    sidecar = tmp_path / "cells.yaml"
    sidecar.write_text(f"nuclear_channel: {value}\n")
    with pytest.raises(SlideSettingsError) as error:
        choose_nuclear_channel(("DAPI", "GFP"), sidecar)
    message = str(error.value)
    assert expected in message and "cells.yaml" in message and len(message.splitlines()) == 1


# ------------------------------------------------------------------- linking planes in 3-D


def test_planes_link_into_one_id_per_true_nucleus():
    truth = truth_labels(SPEC, 0)
    linked = stitch_volume(per_plane_ids(truth))
    assert len(np.unique(linked[linked > 0])) == SPEC.n_nuclei
    for nucleus in range(1, SPEC.n_nuclei + 1):
        assert len(np.unique(linked[truth == nucleus])) == 1  # one id across all its planes
    # Cellpose's IoU rule leaves the small end slices of a nucleus unlinked: why the default scores overlap.
    assert len(np.unique(stitch_volume(per_plane_ids(truth), 0.25, "iou"))) - 1 > SPEC.n_nuclei


def test_a_z_step_longer_than_a_nucleus_links_nothing():
    truth = per_plane_ids(truth_labels(SPEC, 0))
    overlaps = count_overlaps(iter([(truth[5], truth[6])]))
    assert not z_step_too_long(overlaps, z_um=1.0, xy_um=0.5)
    assert z_step_too_long(overlaps, z_um=12.0, xy_um=0.5)  # nuclei here are about 8 µm wide


def test_large_planes_are_tiled_without_losing_or_doubling_nuclei():
    spec = NucleiStackSpec(t=1, z=3, y=500, x=2200, n_nuclei=60, z_um=4.0, seed=7)
    image = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(1, 1, 3, spec.y, spec.x), dtype=np.uint16, chunks=(1, 1, 3, 512, 512)
    )
    image[0, 0] = np.stack([channel_planes(spec, 0, z)[0] for z in range(3)])
    results = []
    for budget in (2**40, 8 * 2**20):  # the whole plane at once, then three 1024-px-wide tiles with margins
        labels = zarr.create_array(
            zarr.storage.MemoryStore(), shape=(1, 3, spec.y, spec.x), dtype=np.uint32, chunks=(1, 1, 512, 512), fill_value=0
        )
        segment_block(image, labels, 0, 0, slice(0, 3), threshold_segmenter, 1, margin=64, budget=budget)
        results.append(np.asarray(labels[0, 1]))
    truth = truth_plane(spec, 0, 1)
    for found in results:
        assert len(np.unique(found[found > 0])) == len(np.unique(truth[truth > 0])) == spec.n_nuclei
        both = (truth > 0) & (found > 0)  # blurred rims fall under the threshold
        pairs = np.unique(np.stack([truth[both], found[both]]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1] == spec.n_nuclei  # one found id per nucleus, none shared
    np.testing.assert_array_equal(results[0] > 0, results[1] > 0)


# ------------------------------------------------------------------- labels as NGFF


def test_labels_are_ngff_that_ome_zarr_reads_and_validates(nuclei_stack):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.image import Image

    folder, info, _ = nuclei_stack
    image = Image.from_zarr(zarr.open_group(str(folder / "stack.ome.zarr"), mode="r"))  # validates the labels too
    assert image.labels.label_paths == ["nuclei"]
    label_attrs = image.labels.get_image_labels_group("nuclei").attributes.ome
    assert [a.name for a in label_attrs.multiscales[0].axes] == ["t", "z", "y", "x"]
    nodes = {str(node.zarr.path).rstrip("/").split("/")[-1]: node for node in Reader(parse_url(str(folder / "stack.ome.zarr")))()}
    label = nodes["nuclei"]
    assert [type(spec).__name__ for spec in label.specs] == ["Label", "Multiscales"]
    image_levels = [d.shape for d in nodes["stack.ome.zarr"].data]
    assert [d.shape for d in label.data] == [(t, z, y, x) for t, _, z, y, x in image_levels]
    level0, level1 = np.asarray(label.data[0]), np.asarray(label.data[1])
    np.testing.assert_array_equal(level1, level0[..., ::2, ::2][..., : level1.shape[2], : level1.shape[3]])  # nearest neighbour


def test_a_damaged_label_image_fails_validation(nuclei_stack, tmp_path):
    from ome_zarr_models.v05.image import Image

    copy = tmp_path / "stack.ome.zarr"
    shutil.copytree(nuclei_stack[0] / "stack.ome.zarr", copy)
    shutil.rmtree(copy / "labels" / "nuclei" / "1")  # a level the metadata lists
    with pytest.raises(Exception):  # noqa: B017 - pydantic's or ome-zarr-models' own error type
        Image.from_zarr(zarr.open_group(str(copy), mode="r"))


def test_each_true_nucleus_has_one_label_id_in_3d_at_every_time_point(nuclei_stack):
    folder, _, _ = nuclei_stack
    labels = open_label_level(folder / "stack.ome.zarr")
    for t in range(SPEC.t):
        found, truth = np.asarray(labels[t]), truth_labels(SPEC, t)
        ids = [np.unique(found[(truth == n) & (found > 0)]) for n in range(1, SPEC.n_nuclei + 1)]
        assert all(len(i) == 1 for i in ids)
        assert len({int(i[0]) for i in ids}) == SPEC.n_nuclei  # no two nuclei share an id


# ------------------------------------------------------------------- nuclei.parquet and tracks


def test_nuclei_table_has_one_row_per_nucleus_and_time_with_true_measurements(nuclei_stack):
    folder, info, summary = nuclei_stack
    schema = pq.read_schema(folder / "nuclei.parquet")
    assert schema.names[:3] == ["t", "label", "track_id"]
    assert {
        "centroid_x",
        "centroid_y",
        "centroid_z",
        "z_first",
        "z_last",
        "volume_um3",
        "mean_DAPI",
        "sum_DAPI",
        "mean_GFP",
        "sum_GFP",
    } <= set(schema.names)
    table = pd.read_parquet(folder / "nuclei.parquet")
    assert table.groupby("t").size().tolist() == [SPEC.n_nuclei] * SPEC.t == summary.nuclei_per_t
    truth = truth_table(SPEC)
    radii = SPEC.nuclei["radii"]
    for t in range(SPEC.t):
        rows, true = table[table["t"] == t], truth[truth["t"] == t]
        distance = np.hypot(
            rows["centroid_x"].to_numpy()[:, None] - true["centroid_x"].to_numpy(),
            rows["centroid_y"].to_numpy()[:, None] - true["centroid_y"].to_numpy(),
        )
        nearest = distance.argmin(axis=1)
        assert distance.min(axis=1).max() < 1.0  # level-0 voxels
        np.testing.assert_allclose(rows["centroid_z"], true["centroid_z"].to_numpy()[nearest], atol=0.6)
        np.testing.assert_allclose(rows["mean_GFP"] - 50, true["gfp"].to_numpy()[nearest], rtol=0.1)
        volumes = 4 / 3 * math.pi * np.prod(radii, axis=1)[nearest]
        np.testing.assert_allclose(rows["volume_um3"], volumes, rtol=0.3)
    assert (table["z_first"] <= table["centroid_z"]).all() and (table["centroid_z"] <= table["z_last"]).all()
    np.testing.assert_allclose(table["sum_DAPI"], table["mean_DAPI"] * table["voxels"])


def test_tracks_link_the_moving_nuclei(nuclei_stack):
    folder, info, summary = nuclei_stack
    table = pd.read_parquet(folder / "nuclei.parquet")
    score = correct_link_fraction(table, truth_table(SPEC), info.physical_size_um, max_distance_um=2.0)
    assert score["pairs"] == SPEC.n_nuclei * (SPEC.t - 1) and score["matched"] == 1.0
    assert score["fraction"] >= 0.95
    assert summary.tracks["tracks"] == table["track_id"].nunique() and summary.tracks["full_length_tracks"] >= 19


def test_scrambled_tracks_score_low(nuclei_stack):
    folder, info, _ = nuclei_stack
    table = pd.read_parquet(folder / "nuclei.parquet")
    table["track_id"] = np.random.default_rng(0).permutation(table["track_id"].to_numpy())
    assert correct_link_fraction(table, truth_table(SPEC), info.physical_size_um, 2.0)["fraction"] < 0.3


def test_link_is_optimal_and_gated():
    previous = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [50.0, 50.0, 0.0]])
    current = np.array([[9.0, 0.0, 0.0], [1.5, 0.0, 0.0], [90.0, 90.0, 0.0]])
    assert sorted(link(previous, current, 5.0)) == [(0, 1), (1, 0)]  # the far pair is left unlinked
    # Greedy nearest-first would take (1, 0) at 4.5 and leave 0 unlinked; the optimum links both.
    assert sorted(link(np.array([[0.0, 0, 0], [5.0, 0, 0]]), np.array([[4.0, 0, 0], [8.0, 0, 0]]), 4.5)) == [(0, 0), (1, 1)]


def test_a_single_plane_stack_reports_area(tmp_path):
    spec = NucleiStackSpec(t=2, z=1, y=128, x=128, n_nuclei=6, z_um=10.0, radius_um=3.5, seed=2)
    path = write_nuclei_stack(tmp_path / "flat.ome.tif", spec)
    info = read_stack_info(path)
    write_ome_zarr(path, info, tmp_path / "stack.ome.zarr")
    segment_stack_nuclei(tmp_path / "stack.ome.zarr", info, 0, threshold_segmenter, tmp_path / "nuclei.parquet")
    table = pd.read_parquet(tmp_path / "nuclei.parquet")
    assert "area_um2" in table and "volume_um3" not in table
    assert len(table) == 12 and (table["z_first"] == 0).all()


def test_a_stack_without_nuclei_writes_an_empty_table_with_every_column(tmp_path):
    spec = NucleiStackSpec(t=2, z=2, y=64, x=64, n_nuclei=0, z_um=5.0)
    path = write_nuclei_stack(tmp_path / "empty.ome.tif", spec)
    info = read_stack_info(path)
    write_ome_zarr(path, info, tmp_path / "stack.ome.zarr")
    summary = segment_stack_nuclei(tmp_path / "stack.ome.zarr", info, 0, threshold_segmenter, tmp_path / "nuclei.parquet")
    table = pd.read_parquet(tmp_path / "nuclei.parquet")
    assert len(table) == 0 and summary.nuclei_per_t == [0, 0]
    assert {"t", "label", "track_id", "volume_um3", "mean_DAPI", "sum_GFP"} <= set(table.columns)
    assert not open_label_level(tmp_path / "stack.ome.zarr")[:].any()


# ------------------------------------------------------------------- through Dagster


def test_process_stack_publishes_nuclei_labels_and_table(user_files_root, dagster_instance):
    from wsi_assets_tests.test_stack_pipeline import failure_message, metadata_of, run

    spec = NucleiStackSpec(
        t=2, z=2, y=160, x=300, n_nuclei=10, z_um=5.0, seed=9
    )  # every nucleus in both planes: the classical floor finds specks in a plane of noise
    folder = user_files_root / "nia" / "inputs" / "main"
    folder.mkdir(parents=True, exist_ok=True)
    write_nuclei_stack(folder / "moving.ome.tif", spec)
    result = run(dagster_instance, "process_stack", "nia/main/moving")
    assert result.success, failure_message(result)
    published = user_files_root / "nia" / "outputs" / "main" / "moving"
    table = pd.read_parquet(published / "nuclei.parquet")
    assert table.groupby("t").size().tolist() == [10, 10] and table["track_id"].nunique() == 10
    assert (published / "nuclei_outlines.png").is_file() and open_label_level(published / "stack.ome.zarr").shape == (
        2,
        2,
        160,
        300,
    )
    meta = metadata_of(result, "stack_nuclei")
    assert meta["nuclei"] == 20 and meta["nuclear_channel"] == "channel 0 (DAPI), channel name" and meta["tracks"]["tracks"] == 10
    assert [r.data["channel"] for r in meta["channels"].records] == ["DAPI", "GFP"]
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["stack_nuclear_channel"] is True

    (folder / "moving.yaml").write_text("nuclear_channel: Hoechst\n")  # a name this stack does not have
    before = published.resolve()
    result = run(dagster_instance, "process_stack", "nia/main/moving")
    assert not result.success
    message = failure_message(result)
    assert (
        message
        == "nia/inputs/main/moving.yaml: nuclear_channel = 'Hoechst' is not a channel name of this stack (0: DAPI, 1: GFP); give the channel's index instead"
    )
    assert published.resolve() == before  # the earlier results stay published
