"""A branch's cell classifier after its nucleus model changes: it must read the new model's nuclei.

A fine-tuned model is a new network, so its nuclei carry an embedding the shipped classifier was
not trained on: without reviewed classes to learn from, the branch's classes would silently drop
to the measurements-only classifier, and a classifier registered for the previous model would
make every run of the branch refuse to type. The base data (CoNSeP's typed tiles) fixes both.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from wsi_assets.cells.cell_classifier import (
    SHIPPED_CLASSIFIER,
    ClassifierNeedsEmbedding,
    classifier_for,
    load_classifier,
    save_classifier,
)
from wsi_assets.finetuning.classifier_finetune import base_held_out_nuclei, base_tiles, base_typed_nuclei
from wsi_assets.finetuning.from_reviews import current_classifier, refit_branch_classifier
from wsi_assets.training.defaults import default_training_data
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES, consep_tile

CONSEP = default_training_data() / "consep_train"
pytestmark = pytest.mark.skipif(not (CONSEP / "types.csv").is_file(), reason="needs ../shared/data/nuclei_train/consep_train")
SUBSET_TILES = ("train_1", "train_13", "train_10")  # two training tiles and a held-out one


@pytest.fixture(scope="module")
def branch_model(tmp_path_factory) -> Path:
    """The shipped network under a fine-tuned model's name: the same weights, another embedding identity."""
    from wsi_assets.models import SHIPPED_MODEL_FILE
    from wsi_assets.training.train import rebuild

    return rebuild(
        SHIPPED_MODEL_FILE, tmp_path_factory.mktemp("model") / "nuclei-ft.pt", {"name": "lab-ft-finetuned", "version": "ft-1"}
    )


@pytest.fixture(scope="module")
def base_subset(tmp_path_factory) -> Path:
    """CoNSeP's crops of three tiles, in its own layout."""
    folder = tmp_path_factory.mktemp("consep_subset")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    with open(CONSEP / "types.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if consep_tile(row["stem"]) in SUBSET_TILES]
    for stem in sorted({row["stem"] for row in rows}):
        for kind in ("images", "labels"):
            shutil.copyfile(CONSEP / kind / f"{stem}.png", folder / kind / f"{stem}.png")
    with open(folder / "types.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _branch(root: Path, settings: str) -> None:
    (root / "lab/inputs/ft").mkdir(parents=True)
    (root / "lab/inputs/ft/branch.yaml").write_text(f"# lab's branch\nmpp: 0.5\n{settings}")


def _refit(root: Path, base: Path | None, model: Path, lines: list[str]) -> dict:
    return refit_branch_classifier(root, "lab", "ft", [], [], 0.5, base, [], "t1", 0.02, lines.append, model)


def test_base_nuclei_come_from_whole_training_tiles_never_held_out_ones():
    nuclei = base_typed_nuclei(CONSEP)
    tiles = set(nuclei.tiles.tolist())
    assert len(tiles) == 4 and not tiles & set(HELD_OUT_CONSEP_TILES), tiles
    assert len(nuclei.classes) > 1000, "four whole tiles hold over a thousand typed nuclei"
    assert base_tiles(CONSEP, held_out=True) == sorted(HELD_OUT_CONSEP_TILES)


@pytest.mark.slow
def test_a_new_model_without_reviewed_classes_gets_a_classifier_for_its_embedding(tmp_path, branch_model):
    # Every training tile of CoNSeP segmented by the model, as the fine-tuning job does: ~30 s
    from wsi_assets.segmentation.registry import get_segmenter

    embedding = get_segmenter(str(branch_model)).embedding
    root = tmp_path / "user_files"
    _branch(root, "model: nuclei-ft.pt\n")
    fallback = classifier_for(embedding)
    assert not fallback.needs_embedding, "the shipped classifier reads the shipped model's embedding only"

    lines: list[str] = []
    outcome = _refit(root, CONSEP, branch_model, lines)
    assert outcome["registered"], (outcome, lines)
    assert outcome["after"]["macro_f1"] >= outcome["before"]["macro_f1"] + 0.05, outcome
    name = Path(outcome["file"]).name
    assert f"classifier: {name}" in (root / "lab/inputs/ft/branch.yaml").read_text()
    chosen = current_classifier(root, "lab", "ft", embedding)
    assert chosen.needs_embedding and chosen.embedding == embedding
    # Judged on the base data's held-out tiles, which it did not learn from.
    held = base_held_out_nuclei(CONSEP, get_segmenter(str(branch_model)))
    assert set(held.tiles.tolist()) == set(HELD_OUT_CONSEP_TILES) and outcome["after"]["cells"] == len(held.classes)
    assert np.mean(chosen.predict(held.columns()) == held.classes) > np.mean(fallback.predict(held.columns()) == held.classes)


def test_a_classifier_for_the_previous_model_is_replaced_or_set_back_to_default(tmp_path, branch_model, base_subset):
    from wsi_assets.segmentation.registry import get_segmenter

    embedding = get_segmenter(str(branch_model)).embedding
    for base in (base_subset, None):
        root = tmp_path / f"user_files_{'base' if base else 'none'}"
        _branch(root, "model: nuclei-ft.pt\nclassifier: cells-old.npz\n")
        (root / "lab/models/ft").mkdir(parents=True)
        # The shipped classifier reads the shipped model's embedding: the branch's previous model.
        save_classifier(load_classifier(shipped=SHIPPED_CLASSIFIER), root / "lab/models/ft/cells-old.npz")
        with pytest.raises(ClassifierNeedsEmbedding):
            current_classifier(root, "lab", "ft", embedding)

        lines: list[str] = []
        outcome = _refit(root, base, branch_model, lines)
        settings = (root / "lab/inputs/ft/branch.yaml").read_text()
        if outcome["registered"]:  # refitted on the two tiles and better than the fallback
            assert base is not None and f"classifier: {Path(outcome['file']).name}" in settings
        else:
            assert "classifier: default" in settings and outcome["reset"] == "cells-old.npz -> default", (outcome, lines)
            assert any("set back to default" in line for line in lines)
        if base is None:
            assert "no base data with types.csv" in outcome["why"], outcome
        assert current_classifier(root, "lab", "ft", embedding) is not None  # the branch's runs can type again
        assert list((root / "lab/models/ft").glob("branch.yaml.*.before-classifier")), "the file as it was is kept"
        assert (root / "lab/models/ft/cells-old.npz").is_file(), "nothing already produced is removed"
