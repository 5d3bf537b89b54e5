"""process_slide end to end on a synthetic slide whose every nucleus is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.cells.exports.cells_csv import CSV_COLUMNS
from wsi_assets.slides.tiling import make_tile_grid
from wsi_assets_tests.conftest import PIPELINE_TILE_CORE_PX
from wsi_assets_tests.export_readers import read_cells_zarr_zip


@pytest.fixture(scope="module")
def truth(pipeline_spec):
    from wsi_assets.slides.synthetic import synthetic_nuclei, synthetic_nucleus_polygons

    nuclei = synthetic_nuclei(pipeline_spec, 0, 0, pipeline_spec.width, pipeline_spec.height)
    return nuclei, synthetic_nucleus_polygons(pipeline_spec, nuclei)


@pytest.fixture(scope="module")
def found(processed_synthetic):
    _, _, folder = processed_synthetic
    return pd.read_csv(folder / "cells.csv")


def _match_found_to_truth(found: pd.DataFrame, truth_polygons: list[np.ndarray], truth: pd.DataFrame) -> np.ndarray:
    """For each found nucleus, the index of the true nucleus whose outline holds its centroid, or -1."""
    import cv2

    tree = cKDTree(truth[["centroid_x", "centroid_y"]].to_numpy())
    matches = np.full(len(found), -1)
    for i, (x, y) in enumerate(found[["centroid_x", "centroid_y"]].to_numpy()):
        for j in tree.query_ball_point((x, y), r=40):
            if cv2.pointPolygonTest(truth_polygons[j].astype(np.float32).reshape(-1, 1, 2), (float(x), float(y)), False) >= 0:
                matches[i] = j
                break
    return matches


def test_run_succeeds_with_all_assets_and_checks(processed_synthetic):
    _, result, folder = processed_synthetic
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    exports = {export.asset_name for export in EXPORT_FORMATS}
    assert {"cells_csv", "cells_zarr"} <= exports
    assert materialized == {
        "slide_metadata",
        "tissue_mask",
        "cell_segmentation",
        "cell_classification",
        *exports,
        "slide_results",
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "nuclei_found_in_tissue": True,
        "nuclei_density_plausible": True,
        "no_duplicate_nuclei_at_tile_borders": True,
        "class_mix_plausible": True,
        "slide_resolution_fine_enough": True,
    }
    export_files = [export.file_name for export in EXPORT_FORMATS if export.default_on]
    assert not [export.file_name for export in EXPORT_FORMATS if not export.default_on and (folder / export.file_name).exists()]
    for name in (
        "cells.csv",
        "cells.zarr.zip",
        *export_files,
        "thumbnail.jpg",
        "tissue_overlay.jpg",
        "qc_overlay.jpg",
        "slide_metadata.json",
    ):
        assert (folder / name).is_file(), name
    assert not [p for p in folder.rglob(".*tmp*")], "temporary files left behind"
    # The published folder is a link to the run's whole result set, the only set left.
    assert folder.is_symlink() and folder.resolve().name == result.run_id
    assert [p.name for p in (folder.parent / ".sets" / folder.name).iterdir()] == [result.run_id]


def test_cell_count_within_ten_percent_of_truth(found, truth):
    true_count = len(truth[0])
    assert true_count > 1000
    assert abs(len(found) - true_count) <= 0.10 * true_count, (len(found), true_count)


def test_no_nucleus_doubled_or_lost_at_tile_borders(found, truth, pipeline_spec):
    nuclei, polygons = truth
    matches = _match_found_to_truth(found, polygons, nuclei)
    matched = matches[matches >= 0]
    doubled = np.unique(matched[np.bincount(matched, minlength=len(nuclei))[matched] > 1])
    assert len(doubled) == 0, f"true nuclei found twice: {nuclei.iloc[doubled][['centroid_x', 'centroid_y']].to_numpy()[:5]}"

    grid = make_tile_grid(pipeline_spec.width, pipeline_spec.height, pipeline_spec.mpp, 0.5, PIPELINE_TILE_CORE_PX, 64)
    step = PIPELINE_TILE_CORE_PX * grid.scale
    x, y = nuclei["centroid_x"].to_numpy(), nuclei["centroid_y"].to_numpy()
    to_border = np.minimum(np.abs(x - np.round(x / step) * step), np.abs(y - np.round(y / step) * step))
    near_border = to_border < 8.0 / pipeline_spec.mpp  # within 8 µm of a core edge: cut by a tile edge
    assert near_border.sum() > 100, "the test slide should have many nuclei on tile borders"
    recall = np.isin(np.arange(len(nuclei)), matched)
    border_recall, interior_recall = recall[near_border].mean(), recall[~near_border].mean()
    assert border_recall >= interior_recall - 0.03, (border_recall, interior_recall)
    assert interior_recall > 0.9


def test_csv_columns_and_polygons(found, processed_synthetic):
    assert list(found.columns[:6]) == CSV_COLUMNS[:6]
    assert found["cell_id"].is_unique
    first = json.loads(found["polygon_coords"].iloc[0])
    assert len(first) == found["polygon_point_count"].iloc[0] >= 3
    assert all(len(vertex) == 2 for vertex in first)
    assert (found["area_pixels"] > 0).all()


def test_csv_area_um2_follows_from_the_slide_pixel_size_and_outline(found, processed_synthetic, truth):
    _, _, folder = processed_synthetic
    mpp = json.loads((folder / "slide_metadata.json").read_text())["mpp"]
    assert mpp == pytest.approx(0.25)
    pixel_um2 = mpp * mpp
    np.testing.assert_allclose(found["area_um2"], found["area_pixels"] * pixel_um2, rtol=1e-4, atol=2e-3)

    # The outline's own (shoelace) area in µm² agrees: the outline runs through the boundary
    # pixels' centres, so it is a little smaller than the pixel count.
    vertices = [np.array(json.loads(text), np.float64) for text in found["polygon_coords"]]
    outline_um2 = (
        np.array([0.5 * abs(np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1))) for v in vertices])
        * pixel_um2
    )
    ratio = outline_um2 / found["area_um2"].to_numpy()
    assert 0.75 < np.median(ratio) < 1.02, np.median(ratio)

    # And nuclei are nucleus-sized in µm²: the synthetic slide's radii are 3-5.5 µm.
    true_um2 = truth[0]["area_pixels"].to_numpy() * pixel_um2
    assert np.median(found["area_um2"]) == pytest.approx(np.median(true_um2), rel=0.15)


def test_csv_and_zarr_agree(found, processed_synthetic):
    key, _, folder = processed_synthetic
    zarr_data = read_cells_zarr_zip(folder / "cells.zarr.zip")
    assert zarr_data["attrs"]["total_cells"] == len(found)
    assert zarr_data["attrs"]["slide"] == key
    assert zarr_data["attrs"]["segmenter"]
    np.testing.assert_array_equal(zarr_data["cell_ids"], found["cell_id"].to_numpy())
    np.testing.assert_allclose(zarr_data["centroids"], found[["centroid_x", "centroid_y"]].to_numpy(), atol=1e-3)
    np.testing.assert_array_equal(zarr_data["polygon_point_counts"], found["polygon_point_count"].to_numpy())
    offsets = zarr_data["polygon_offsets"]
    assert offsets[0] == 0 and offsets[-1] == len(zarr_data["polygon_vertices"])
    for i in np.linspace(0, len(found) - 1, 25).astype(int):
        from_csv = np.array(json.loads(found["polygon_coords"].iloc[i]))
        from_zarr = zarr_data["polygon_vertices"][offsets[i] : offsets[i + 1]]
        np.testing.assert_allclose(from_zarr, from_csv, atol=0.01)


def test_metadata_shown_in_ui(processed_synthetic):
    _, result, _ = processed_synthetic
    by_asset = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert by_asset["slide_metadata"]["mpp"].value == pytest.approx(0.25)
    assert by_asset["slide_metadata"]["vendor"].value == "aperio"
    for asset, key in (("slide_metadata", "thumbnail"), ("tissue_mask", "overlay"), ("cell_segmentation", "outlines")):
        markdown = by_asset[asset][key].value
        assert markdown.startswith("![") and "data:image/jpeg;base64," in markdown
        assert len(markdown) < 120_000, f"{asset}.{key} is too big for the UI"
    segmentation = by_asset["cell_segmentation"]
    for field in ("tiles", "seconds", "tissue_mm2_per_s", "device"):
        assert field in segmentation
    assert 0.3 < by_asset["tissue_mask"]["tissue_fraction"].value < 0.7


def test_file_paths_shown_in_ui_are_the_published_ones(processed_synthetic):
    # A user clicks through to the file readers open, not the run's staging folder under .sets/
    _, result, folder = processed_synthetic
    by_asset = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    shown = [("cell_segmentation", by_asset["cell_segmentation"]["cells_file"].value)]
    shown += [(e.asset_name, by_asset[e.asset_name]["path"].value) for e in EXPORT_FORMATS if "path" in by_asset[e.asset_name]]
    assert len(shown) >= 4
    for asset, path in shown:
        assert ".sets" not in Path(path).parts, f"{asset} shows the staging path {path}"
        assert Path(path).is_relative_to(folder), (asset, path, folder)
        assert Path(path).exists(), f"{asset} shows {path}, which does not exist"


def test_progress_logged_every_ten_percent(processed_synthetic, dagster_instance):
    _, result, _ = processed_synthetic
    messages = [
        record.user_message
        for record in dagster_instance.all_logs(result.run_id)
        if record.step_key == "cell_segmentation" and "segmentation " in record.user_message and "tiles/s" in record.user_message
    ]
    percents = [int(m.split("segmentation ")[1].split("%")[0]) for m in messages]
    assert percents[-1] == 100
    assert all(b - a <= 10 for a, b in zip([0] + percents, percents)), percents
    assert all("ETA" in m for m in messages)


def test_export_cells_rewrites_exports_without_segmenting(processed_synthetic, dagster_instance):
    from wsi_assets.definitions import defs

    key, _, folder = processed_synthetic
    before = (folder / "segmentation" / "cells.parquet").stat().st_mtime_ns
    (folder / "cells.csv").unlink()
    result = defs.resolve_job_def("export_cells").execute_in_process(instance=dagster_instance, partition_key=key)
    assert result.success
    assert (folder / "cells.csv").is_file()
    assert (folder / "segmentation" / "cells.parquet").stat().st_mtime_ns == before
