"""`classifier: cnn`: the nucleus classifier network types each nucleus while the slide is segmented,
and classification takes the argmax of what it stored (`forest+cnn`: of its mean with the forest's
probabilities); other branches' tables are unchanged."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from wsi_assets.cells.cell_classifier import classifier_for
from wsi_assets.cells.classes import CLASS_COLUMN, CLASS_NAMES
from wsi_assets.cells.classification import CLASSIFICATION_KEY, classification_method, classify_stored_cells, measurement_columns
from wsi_assets.cells.embeddings import label_centroids_of
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, NucleusMeasurer
from wsi_assets.cells.nucleus_cnn import load_nucleus_cnn
from wsi_assets.cells.nucleus_typer import CNN_COLUMNS, CNN_KEY, newest_shipped_cnn, stored_cnn, typing_measurer
from wsi_assets.cells.store import SCHEMA, iter_record_batches
from wsi_assets.core.branch_settings import branch_settings_from_text
from wsi_assets.finetuning.branch_files import check_branch_files
from wsi_assets.segmentation.classical import ClassicalSegmenter
from wsi_assets.segmentation.slide import TilingSettings, _read_tile, segment_slide
from wsi_assets.slides.reader import open_slide
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide
from wsi_assets.slides.tiling import make_tile_grid

MPP = 0.5
TILING = TilingSettings(core=384, margin=64, batch_size=2, read_threads=1, postprocess_threads=2)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("cnn_slide") / "synthetic.tiff"
    write_synthetic_slide(path, SyntheticSlideSpec(width=1152, height=768, mpp=MPP, seed=5, tissue_fraction=0.7))
    return path


def _segmented(slide, destination, typed: bool):
    segmenter = ClassicalSegmenter(mpp=MPP, threads=1)
    measurer = NucleusMeasurer(MPP)
    segment_slide(slide, MPP, None, segmenter, destination, TILING, measurer=typing_measurer(measurer) if typed else measurer)
    return segmenter


@pytest.fixture(scope="module")
def typed_cells(slide, tmp_path_factory):
    cells = tmp_path_factory.mktemp("typed") / "cells.parquet"
    return cells, _segmented(slide, cells, typed=True)


@pytest.fixture(scope="module")
def plain_cells(slide, tmp_path_factory):
    cells = tmp_path_factory.mktemp("plain") / "cells.parquet"
    _segmented(slide, cells, typed=False)
    return cells


def _classified(cells, destination, method_name: str) -> np.ndarray:
    method = classification_method(method_name, LymphocyteRule(), embedding=None, cnn=stored_cnn(cells))
    classify_stored_cells(cells, destination, method, MPP)
    return pq.read_table(destination, columns=[CLASS_COLUMN]).column(CLASS_COLUMN).to_numpy(zero_copy_only=False)


def test_a_cnn_branch_stores_the_networks_probabilities_and_classifies_by_them(typed_cells, slide, tmp_path):
    cells, segmenter = typed_cells
    schema = pq.read_schema(cells)
    assert schema.names[-len(CNN_COLUMNS) :] == list(CNN_COLUMNS)
    identity = json.loads(schema.metadata[CNN_KEY.encode()])
    model = load_nucleus_cnn(newest_shipped_cnn())
    assert identity["model"] == model.name and identity["file"] == newest_shipped_cnn().name
    assert identity["normalisation"] == model.normalisation
    classes = _classified(cells, tmp_path / "classified.parquet", "cnn")
    table = pq.read_table(cells)
    assert json.loads(pq.read_schema(tmp_path / "classified.parquet").metadata[CLASSIFICATION_KEY.encode()])["method"] == "cnn"

    # The tile with most nuclei, segmented again and typed by the network on its own.
    rows, cols = table.column("tile_row").to_numpy(), table.column("tile_col").to_numpy()
    tiles, counts = np.unique(np.stack([rows, cols], axis=1), axis=0, return_counts=True)
    row, col = tiles[np.argmax(counts)]
    grid = make_tile_grid(1152, 768, MPP, MPP, TILING.core, TILING.margin)
    tile = grid.tile(int(row), int(col))
    with open_slide(slide) as handle:
        rgb = _read_tile(handle, tile, grid)
    labels = segmenter.segment_batch(rgb[None])[0]
    expected = model.classify(rgb, labels)
    ids = np.asarray(sorted(expected), np.int64)
    _, crops = model.crops(rgb, labels, ids)
    probabilities = model.probabilities(crops)
    label_x, label_y = label_centroids_of(labels, ids)

    mine = np.flatnonzero((rows == row) & (cols == col))
    assert len(mine) >= 20
    x = (table.column("centroid_x").to_numpy()[mine] - tile.read_x) / grid.scale
    y = (table.column("centroid_y").to_numpy()[mine] - tile.read_y) / grid.scale
    nearest = np.argmin((x[:, None] - label_x[None]) ** 2 + (y[:, None] - label_y[None]) ** 2, axis=1)
    assert np.allclose(x, label_x[nearest], atol=1e-3) and np.allclose(y, label_y[nearest], atol=1e-3)
    assert classes[mine].tolist() == [expected[int(i)] for i in ids[nearest]]
    stored = np.stack([table.column(name).to_numpy()[mine] for name in CNN_COLUMNS], axis=1)
    order = [list(model.classes).index(name) for name in CLASS_NAMES]
    assert np.allclose(stored, probabilities[nearest][:, order], atol=1e-4)


def test_reclassifying_keeps_the_stored_probabilities(typed_cells, tmp_path):
    cells, _ = typed_cells
    first = _classified(cells, tmp_path / "once.parquet", "cnn")
    again = _classified(tmp_path / "once.parquet", tmp_path / "twice.parquet", "cnn")
    assert first.tolist() == again.tolist()
    assert stored_cnn(tmp_path / "twice.parquet") == stored_cnn(cells)


def test_other_branches_tables_carry_no_network_columns(plain_cells):
    schema = pq.read_schema(plain_cells)
    assert schema.names == SCHEMA.names + list(MEASUREMENT_COLUMNS)
    assert CNN_KEY.encode() not in (schema.metadata or {})
    assert stored_cnn(plain_cells) is None


def test_cnn_on_a_table_without_the_columns_falls_back_to_the_forest(plain_cells, tmp_path):
    method = classification_method("cnn", LymphocyteRule(), embedding=None, cnn=stored_cnn(plain_cells))
    assert method.name == "default" and "segment the slide again" in method.details["cnn_fallback"]
    classes = _classified(plain_cells, tmp_path / "fallback.parquet", "cnn")
    forest = classifier_for(None)
    expected = np.concatenate([forest.predict(measurement_columns(batch, MPP)) for batch in iter_record_batches(plain_cells)])
    assert len(classes) > 100 and classes.tolist() == expected.tolist()
    assert json.loads(pq.read_schema(tmp_path / "fallback.parquet").metadata[CLASSIFICATION_KEY.encode()])["cnn_fallback"]


def _forest_and_cnn_mean(cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes from the mean of the forest's and the stored network's probabilities, worked out here; and each alone."""
    forest = classifier_for(None)
    names = np.asarray(CLASS_NAMES, object)
    mean, forest_alone, cnn_alone = [], [], []
    for batch in iter_record_batches(cells):
        by_forest = forest.probabilities(measurement_columns(batch, MPP))
        by_forest = np.stack([by_forest[:, forest.classes.index(name)] for name in CLASS_NAMES], axis=1)
        by_cnn = np.stack([batch.column(f"cnn_{name}").to_numpy() for name in CLASS_NAMES], axis=1)
        mean.append(names[np.argmax(by_forest + by_cnn, axis=1)])
        forest_alone.append(names[np.argmax(by_forest, axis=1)])
        cnn_alone.append(names[np.argmax(by_cnn, axis=1)])
    return np.concatenate(mean), np.concatenate(forest_alone), np.concatenate(cnn_alone)


def test_forest_plus_cnn_classifies_by_the_mean_of_the_two_probabilities(typed_cells, tmp_path):
    cells, _ = typed_cells
    classes = _classified(cells, tmp_path / "blend.parquet", "forest+cnn")
    details = json.loads(pq.read_schema(tmp_path / "blend.parquet").metadata[CLASSIFICATION_KEY.encode()])
    assert details["method"] == "forest+cnn" and details["cnn"] == stored_cnn(cells) and "cnn_fallback" not in details
    expected, forest_alone, cnn_alone = _forest_and_cnn_mean(cells)
    assert classes.tolist() == expected.tolist()
    # The mean differs from either alone on these nuclei, so neither could pass for it.
    assert classes.tolist() != forest_alone.tolist() and classes.tolist() != cnn_alone.tolist()


def test_forest_plus_cnn_on_a_table_without_the_columns_falls_back_to_the_forest(plain_cells, tmp_path):
    method = classification_method("forest+cnn", LymphocyteRule(), embedding=None, cnn=stored_cnn(plain_cells))
    assert method.name == "default" and "segment the slide again" in method.details["cnn_fallback"]
    classes = _classified(plain_cells, tmp_path / "fallback.parquet", "forest+cnn")
    forest = classifier_for(None)
    expected = np.concatenate([forest.predict(measurement_columns(batch, MPP)) for batch in iter_record_batches(plain_cells)])
    assert len(classes) > 100 and classes.tolist() == expected.tolist()


@pytest.mark.parametrize("choice", ["cnn", "forest+cnn"])
def test_classifier_cnn_is_a_branch_setting_that_names_no_file(tmp_path, choice):
    settings = branch_settings_from_text(f"classifier: {choice}\n", "alice/inputs/main/branch.yaml")
    assert settings.classifier == choice
    check_branch_files(tmp_path, "alice", "main", settings)  # no classifier file is looked for


@pytest.mark.parametrize("choice", ["cnn", "forest+cnn"])
def test_process_slide_on_a_cnn_branch_types_nuclei_by_the_network(tmp_path, user_files_root, dagster_instance, choice):
    from wsi_assets.cells.nucleus_typer import cnn_classes
    from wsi_assets_tests.conftest import run_process_slide

    user, branch = "dora", "cnn"
    inputs = user_files_root / user / "inputs" / branch
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "branch.yaml").write_text(f"classifier: {choice}\n")
    source = tmp_path / "cnn.svs"
    write_synthetic_slide(source, SyntheticSlideSpec(width=1536, height=1024, mpp=0.25, seed=7))
    _, result = run_process_slide(dagster_instance, user_files_root, user, branch, source, "cnn01")
    assert result.success
    folder = user_files_root / user / "outputs" / branch / "cnn01" / "segmentation"
    table = pq.read_table(folder / "cells.parquet")
    assert len(table) > 20 and CNN_KEY.encode() in table.schema.metadata
    columns = {name: table.column(name).to_numpy() for name in CNN_COLUMNS}
    if choice == "cnn":
        assert table.column(CLASS_COLUMN).to_numpy(zero_copy_only=False).tolist() == cnn_classes(columns).tolist()
    assert json.loads((folder / "classes.json").read_text())["method"] == choice
