"""Measurements and classes end to end: process_slide writes them into every export, classify_cells
re-applies a tuned rule without segmenting, and bad settings or classifier files fail in one line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from wsi_assets.cells.classes import CLASS_COLOURS, CLASS_NAMES
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, QUPATH_NAMES
from wsi_assets_tests.conftest import run_process_slide
from wsi_assets_tests.qupath_geojson_checks import iter_features, qupath_import_problems
from wsi_assets_tests.test_result_sets import failure_message, materialized, one_line, run_job

USER, BRANCH, STEM = "carol", "typed", "typed01"
KEY = f"{USER}/{BRANCH}/{STEM}"


@pytest.fixture(scope="module")
def typed_slide(tmp_path_factory, user_files_root, dagster_instance):
    """A synthetic slide processed once; the tests below classify it again in order."""
    from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

    source = tmp_path_factory.mktemp("typed") / "typed.svs"
    write_synthetic_slide(source, SyntheticSlideSpec(width=3000, height=2400, mpp=0.25, seed=5))
    key, result = run_process_slide(dagster_instance, user_files_root, USER, BRANCH, source, STEM)
    assert result.success
    return user_files_root / USER / "outputs" / BRANCH / STEM, user_files_root / USER / "inputs" / BRANCH


def _stored(folder):
    return pq.read_table(folder / "segmentation" / "cells.parquet").to_pandas()


def test_every_export_carries_measurements_and_classes(typed_slide):
    folder, _ = typed_slide
    stored = _stored(folder)
    assert len(stored) > 100
    assert set(stored["class"]) <= set(CLASS_NAMES) and stored["class"].notna().all()
    # Measurements belong to their own nucleus: the max caliper is the widest span of its stored outline.
    span = np.array(
        [
            np.max(np.hypot(np.subtract.outer(x, x), np.subtract.outer(y, y)))
            for x, y in zip(stored["polygon_x"], stored["polygon_y"])
        ]
    )
    mpp = 0.25
    assert np.allclose(stored["nucleus_max_caliper_um"], span * mpp, atol=1.5)
    assert stored["nucleus_hematoxylin_od_mean"].between(0.05, 3).mean() > 0.95

    csv = pd.read_csv(folder / "cells.csv")
    assert list(csv.columns[:6]) == [
        "cell_id",
        "centroid_x",
        "centroid_y",
        "polygon_coords",
        "polygon_point_count",
        "area_pixels",
    ]
    assert [c for c in csv.columns if c in MEASUREMENT_COLUMNS] == list(MEASUREMENT_COLUMNS) and csv.columns[-1] == "class"
    assert np.allclose(csv["nucleus_circularity"], stored["nucleus_circularity"], atol=1e-4, equal_nan=True)
    assert (csv["class"] == stored["class"]).all()

    geo = pq.read_table(folder / "cells.parquet").to_pandas()
    assert set(MEASUREMENT_COLUMNS) | {"class"} <= set(geo.columns)

    geojson = folder / "cells.geojson"
    assert qupath_import_problems(geojson, (3000, 2400)) == []
    features = list(iter_features(geojson))
    assert len(features) == len(stored)
    first = features[0]["properties"]
    assert set(QUPATH_NAMES.values()) <= set(first["measurements"])
    assert first["classification"]["name"] == stored["class"].iloc[0]
    assert tuple(first["classification"]["color"]) == CLASS_COLOURS[stored["class"].iloc[0]]

    import zarr

    store = zarr.storage.ZipStore(str(folder / "cells.zarr.zip"), mode="r")
    try:
        root = zarr.open_group(store=store, mode="r")
        codes = root["class_codes"][:]
        names = np.asarray(root["class_codes"].attrs["class_names"])[codes]
        assert names.tolist() == stored["class"].tolist()
        assert np.allclose(root["measurements"]["nucleus_solidity"][:], stored["nucleus_solidity"], equal_nan=True)
        assert root["measurements"].attrs["qupath_names"]["nucleus_solidity"] == "Nucleus: Solidity"
    finally:
        store.close()

    figures = json.loads((folder / "segmentation" / "classes.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert figures["class_counts"] == stored["class"].value_counts().reindex(CLASS_NAMES, fill_value=0).to_dict()
    assert summary["lymphocytes_per_mm2"] == pytest.approx(
        figures["class_counts"]["inflammatory"] / figures["tissue_mm2"], rel=0.01
    )
    assert (folder / "segmentation" / "class_overlay.jpg").stat().st_size > 1000


def test_classify_cells_reapplies_a_tuned_rule_without_segmenting(typed_slide, dagster_instance):
    folder, inputs = typed_slide
    slide_hash = hashlib.sha256((inputs / f"{STEM}.svs").read_bytes()).hexdigest()
    before = _stored(folder)
    rule = LymphocyteRule(max_area_um2=30.0, min_circularity=0.7, min_hematoxylin_od=0.2)
    (inputs / "branch.yaml").write_text(
        "classifier: rule\nlymphocyte_rule: {max_area_um2: 30, min_circularity: 0.7, min_hematoxylin_od: 0.2}\n"
    )
    try:
        result = run_job(dagster_instance, "classify_cells", KEY)
        assert result.success
        assert "cell_segmentation" not in materialized(result) and "cell_classification" in materialized(result)
        after = _stored(folder)
        # The same nuclei, outlines and measurements; only the classes are new.
        assert after["cell_id"].tolist() == before["cell_id"].tolist()
        assert np.array_equal(after["centroid_x"], before["centroid_x"])
        assert np.allclose(after[list(MEASUREMENT_COLUMNS)], before[list(MEASUREMENT_COLUMNS)], equal_nan=True)
        # The rule, applied independently to the exported measurements.
        csv = pd.read_csv(folder / "cells.csv")
        expected = np.where(
            (csv["area_um2"] <= 30.0) & (csv["nucleus_circularity"] >= 0.7) & (csv["nucleus_hematoxylin_od_mean"] >= 0.2),
            "inflammatory",
            "other",
        )
        assert csv["class"].tolist() == expected.tolist() == after["class"].tolist()
        assert 0 < (expected == "inflammatory").sum() < len(expected)
        assert json.loads((folder / "segmentation" / "classes.json").read_text())["lymphocyte_rule"] == rule.as_dict()

        # A per-run setting wins over branch.yaml: nothing is that small.
        tight = {"ops": {"cell_classification": {"config": {"max_area_um2": 1.0}}}}
        result = run_job(dagster_instance, "classify_cells", KEY, run_config=tight)
        assert result.success
        assert set(_stored(folder)["class"]) == {"other"}
    finally:
        (inputs / "branch.yaml").unlink()
    assert hashlib.sha256((inputs / f"{STEM}.svs").read_bytes()).hexdigest() == slide_hash


@pytest.mark.parametrize(
    "settings, extra, message",
    [
        ("lymphocyte_rule: {max_area: 3}\n", None, "unknown key 'max_area'|unknown lymphocyte_rule key 'max_area'"),
        ("classifier: junk.npz\n", b"not a classifier", "junk.npz cannot be read as a cell classifier"),
        ("classifier: absent.npz\n", None, "classifier file absent.npz does not exist"),
    ],
)
def test_bad_classification_settings_fail_in_one_line_and_keep_the_published_set(
    typed_slide, dagster_instance, settings, extra, message
):
    import re

    folder, inputs = typed_slide
    before = (folder / "segmentation" / "cells.parquet").read_bytes()
    (inputs / "branch.yaml").write_text(settings)
    if extra is not None:
        (inputs / settings.split(": ")[1].strip()).write_bytes(extra)
    try:
        result = run_job(dagster_instance, "classify_cells", KEY)
        assert not result.success
        assert re.search(message, one_line(failure_message(result)))
        assert (folder / "segmentation" / "cells.parquet").read_bytes() == before
    finally:
        for name in ("branch.yaml", "junk.npz"):
            (inputs / name).unlink(missing_ok=True)
