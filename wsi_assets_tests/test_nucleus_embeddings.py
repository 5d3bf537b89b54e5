"""Nucleus embeddings: read at each centroid, stored with the cells, kept out of exports, and read
only by a classifier trained on the same network."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from wsi_assets.cells.cell_classifier import (
    FEATURE_COLUMNS,
    BadClassifierFile,
    CellClassifier,
    ClassifierNeedsEmbedding,
    classifier_for,
    embedding_feature_names,
    load_classifier,
    save_classifier,
)
from wsi_assets.cells.classification import RULE_METHOD, classification_method, classify_stored_cells
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS
from wsi_assets.cells.store import CellStoreWriter, extra_columns, iter_record_batches, stored_embedding
from wsi_assets.cells.table import NucleusTable
from wsi_assets.cells.embeddings import (
    EMBEDDING_COLUMN,
    EMBEDDING_KEY,
    EmbeddingMaps,
    embedding_identity,
    embeddings_at,
    label_centroids_of,
)
from wsi_assets.training.cell_classifier_training import TypedNuclei, fit_forest

IDENTITY = embedding_identity("test_unet", "1", {"strides": [4], "channels": [3]})


def test_embedding_is_the_maps_read_bilinearly_at_each_centroid():
    rng = np.random.default_rng(0)
    quarter = rng.standard_normal((5, 30, 40)).astype(np.float32)
    eighth = rng.standard_normal((3, 15, 20)).astype(np.float32)
    maps = EmbeddingMaps((quarter, eighth), (4, 8))
    height, width = 120, 160
    x, y = rng.uniform(0, width, 200), rng.uniform(0, height, 200)
    found = embeddings_at(maps, x, y)
    assert found.shape == (200, 8) and found.dtype == np.float16
    # torch's grid_sample (align_corners=False, edges clamped) is the independent reference.
    grid = torch.from_numpy(np.stack([x / width * 2 - 1, y / height * 2 - 1], 1)).float()[None, None]
    expected = np.concatenate(
        [
            F.grid_sample(torch.from_numpy(level)[None], grid, align_corners=False, padding_mode="border")[0, :, 0].T.numpy()
            for level in (quarter, eighth)
        ],
        1,
    )
    assert np.abs(found.astype(np.float32) - expected).max() < 4e-3
    # A centroid in the middle of a cell reads that cell exactly; a shifted read does not.
    assert np.allclose(embeddings_at(maps, [4 * 7 + 2], [4 * 3 + 2])[0, :5], quarter[:, 3, 7], atol=4e-3)
    assert not np.allclose(embeddings_at(maps, [4 * 8 + 2], [4 * 3 + 2])[0, :5], quarter[:, 3, 7], atol=4e-3)
    assert embeddings_at(maps, [], []).shape == (0, 8)


def test_label_centroids_follow_the_pixel_centre_convention():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 6:8] = 3  # pixels 6, 7 -> centre x 7.0; rows 2, 3 -> centre y 3.0
    labels[5, 1] = 1
    x, y = label_centroids_of(labels, np.array([3, 1]))
    assert x.tolist() == [7.0, 1.5] and y.tolist() == [3.0, 5.5]


def _nuclei(count: int, embedding: np.ndarray) -> NucleusTable:
    offsets = np.arange(count + 1, dtype=np.int64) * 3
    vertices = np.tile(np.array([[0, 0], [4, 0], [0, 4]], np.float32), (count, 1))
    table = NucleusTable(np.arange(count, dtype=float), np.zeros(count), np.full(count, 8.0), offsets, vertices)
    table.columns = {**{name: np.full(count, 0.5, np.float32) for name in MEASUREMENT_COLUMNS}, EMBEDDING_COLUMN: embedding}
    return table


def _stored_cells(tmp_path, embedding: np.ndarray, identity: dict | None = IDENTITY):
    path = tmp_path / "cells.parquet"
    metadata = {EMBEDDING_KEY: json.dumps(identity)} if identity else {}
    with CellStoreWriter(path, metadata, MEASUREMENT_COLUMNS, embedding.shape[1]) as writer:
        writer.append(_nuclei(len(embedding), embedding), 0, 0)
    return path


def test_cell_table_stores_the_embedding_but_exports_never_see_it(tmp_path):
    embedding = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float16)
    path = _stored_cells(tmp_path, embedding)
    assert stored_embedding(path) == IDENTITY
    stored = pq.read_table(path).column(EMBEDDING_COLUMN).combine_chunks()
    assert np.array_equal(stored.flatten().to_numpy().reshape(6, 3), embedding)
    assert [field.name for field in extra_columns(path)] == list(MEASUREMENT_COLUMNS)
    assert EMBEDDING_COLUMN not in next(iter_record_batches(path)).schema.names
    assert EMBEDDING_COLUMN in next(iter_record_batches(path, with_embedding=True)).schema.names


def _classifier_on_channel_zero(identity: dict | None = IDENTITY) -> CellClassifier:
    """A forest that types by embedding channel 0 alone: > 0 inflammatory, else epithelial."""
    rng = np.random.default_rng(2)
    embedding = rng.standard_normal((400, 3)).astype(np.float32)
    measurements = rng.uniform(0, 1, (400, len(FEATURE_COLUMNS))).astype(np.float32)
    classes = np.where(embedding[:, 0] > 0, "inflammatory", "epithelial").astype(object)
    names = FEATURE_COLUMNS + embedding_feature_names(3)
    forest = fit_forest(TypedNuclei(np.concatenate([measurements, embedding], 1), classes, np.zeros(400, object), names), trees=5)
    return CellClassifier(
        **{**forest.__dict__, "info": {"name": "probe", "version": 1, **({"embedding": identity} if identity else {})}}
    )


def test_a_classifier_reading_the_embedding_types_stored_cells_by_it(tmp_path):
    classifier_file = tmp_path / "probe.npz"
    save_classifier(_classifier_on_channel_zero(), classifier_file)
    embedding = np.zeros((6, 3), np.float16)
    embedding[:, 0] = [2, -2, 2, -2, 2, -2]
    cells = _stored_cells(tmp_path, embedding)
    method = classification_method("probe.npz", LymphocyteRule(), classifier_file, stored_embedding(cells))
    counts = classify_stored_cells(cells, tmp_path / "classified.parquet", method, mpp=0.25)
    table = pq.read_table(tmp_path / "classified.parquet")
    assert table.column("class").to_pylist() == ["inflammatory", "epithelial"] * 3
    assert counts["inflammatory"] == 3 and EMBEDDING_COLUMN in table.column_names
    # The rule ignores the embedding, and still runs on such a table.
    classify_stored_cells(
        cells, tmp_path / "ruled.parquet", classification_method(RULE_METHOD, LymphocyteRule(), None, IDENTITY), mpp=0.25
    )


def test_an_embedding_classifier_refuses_nuclei_from_another_network_in_one_line(tmp_path):
    classifier_file = tmp_path / "probe.npz"
    save_classifier(_classifier_on_channel_zero(), classifier_file)
    other = {**IDENTITY, "version": "2"}
    for embedding in (None, other):
        with pytest.raises(ClassifierNeedsEmbedding, match="probe.npz reads the nucleus embedding of test_unet v1") as error:
            classifier_for(embedding, classifier_file)
        assert "\n" not in str(error.value)
    assert classifier_for(IDENTITY, classifier_file).needs_embedding
    with pytest.raises(ClassifierNeedsEmbedding, match="which these nuclei lack"):
        load_classifier(classifier_file).predict({name: np.zeros(2, np.float32) for name in FEATURE_COLUMNS})


def test_a_classifier_file_reading_an_unnamed_embedding_is_refused(tmp_path):
    unnamed = tmp_path / "unnamed.npz"
    save_classifier(_classifier_on_channel_zero(identity=None), unnamed)
    with pytest.raises(BadClassifierFile, match="unnamed.npz reads embedding features but does not say which network"):
        load_classifier(unnamed)
    narrow = tmp_path / "narrow.npz"
    save_classifier(_classifier_on_channel_zero(identity={**IDENTITY, "width": 1}), narrow)
    with pytest.raises(BadClassifierFile, match="narrow.npz reads embedding features"):
        load_classifier(narrow)


def test_nuclei_without_an_embedding_get_the_measurements_only_classifier():
    fallback = classifier_for(None)
    assert not fallback.needs_embedding and fallback.features == FEATURE_COLUMNS
    assert not classifier_for(IDENTITY).needs_embedding  # another network's embedding: no use to the default


def test_reviewed_cells_carry_the_branch_models_embedding_for_a_refitted_classifier():
    from wsi_assets.finetuning.classifier_finetune import refit_classifier, reviewed_nuclei
    from wsi_assets.finetuning.review_tiles import ReviewedTile
    from wsi_assets.segmentation.registry import get_segmenter
    from wsi_assets.slides.synthetic import SyntheticSlideSpec
    from wsi_assets.slides.synthetic.rendering import render_region

    segmenter = get_segmenter("default", device="cpu")
    rgb = render_region(SyntheticSlideSpec(width=1024, height=1024, mpp=0.5, seed=5), 1.0, 128, 128, 384, 384)
    labels = segmenter.segment_batch(rgb[None])[0]
    ids = np.unique(labels)[1:]
    areas = np.bincount(labels.ravel())[ids]
    classes = {int(i): ("epithelial" if a > np.median(areas) else "inflammatory") for i, a in zip(ids, areas)}
    tile = ReviewedTile("s1", (0, 0, 384, 384), rgb, labels, len(ids), classes)
    plain, embedded = reviewed_nuclei([tile], 0.5), reviewed_nuclei([tile], 0.5, segmenter)
    width = segmenter.embedding["width"]
    assert plain.names == FEATURE_COLUMNS and embedded.names == FEATURE_COLUMNS + embedding_feature_names(width)
    assert len(embedded.classes) == len(plain.classes) > 20
    assert np.array_equal(embedded.features[:, : len(FEATURE_COLUMNS)], plain.features)
    # The embedding columns are the tile's maps read at each kept cell's centroid.
    _, maps = segmenter.segment_batch_with_embeddings(rgb[None])
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    kept = np.array([i for i in ids if i not in edge])
    expected = embeddings_at(maps[0], *label_centroids_of(labels, kept)).astype(np.float32)
    assert np.array_equal(embedded.features[:, len(FEATURE_COLUMNS) :], expected)
    assert (
        refit_classifier(embedded, None, trees=5).needs_embedding and not refit_classifier(plain, None, trees=5).needs_embedding
    )
