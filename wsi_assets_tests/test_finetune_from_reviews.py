"""finetune_from_reviews: a model that misses the large nuclei learns them from a review and is registered; one that does not improve is kept aside.

The slide is synthetic, so its drawn truth is known; that truth, imported as a QuPath review,
plays the pathologist. The branch's model is a small U-Net taught on another slide's small nuclei
only, so it systematically misses the large ones.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import shapely

from wsi_assets.finetuning.branch_model import BranchModelMissing, resolve_branch_model
from wsi_assets.finetuning.from_reviews import finetune_branch
from wsi_assets.finetuning.nucleus_finetune import FineTuneSettings, fine_tune_nuclei
from wsi_assets.finetuning.review_tiles import (
    TooFewReviewedTiles,
    reviewed_tiles,
    split_held_out,
)
from wsi_assets.reviews.review_files import cell_review_changes
from wsi_assets.reviews.review_geojson import ReviewedCells
from wsi_assets.reviews.version_store import import_review
from wsi_assets.segmentation.metrics import match_instances
from wsi_assets.slides.reader import open_slide
from wsi_assets.slides.synthetic import (
    SyntheticSlideSpec,
    synthetic_nuclei,
    synthetic_nucleus_polygons,
    write_synthetic_slide,
)

MPP = 0.5  # the slide's and the model's: tiles are read without resampling
LARGE_UM = 4.6  # nuclei whose longer semi-axis is above this are the kind the weak model never saw
WEAK_SETTINGS = FineTuneSettings(steps=120, batch=8, crop=96, lr=3e-3)
FINE_TUNE = FineTuneSettings(steps=150, batch=8, crop=96)


def truth(spec):
    nuclei = synthetic_nuclei(spec, 0, 0, spec.width, spec.height)
    polygons = [shapely.Polygon(o) for o in synthetic_nucleus_polygons(spec, nuclei)]
    return polygons, (nuclei["semi_major"].to_numpy() * spec.mpp > LARGE_UM)


def review_bytes(polygons, large, regions) -> bytes:
    """The truth as a QuPath export; its classes follow size (large ones epithelial), which the reviewer's classifier must learn."""
    features = [
        {
            "type": "Feature",
            "geometry": json.loads(shapely.to_geojson(p)),
            "properties": {"objectType": "detection", "classification": "epithelial" if big else "inflammatory"},
        }
        for p, big in zip(polygons, large)
    ]
    features += [
        {"type": "Feature", "geometry": json.loads(shapely.to_geojson(r)), "properties": {"objectType": "annotation"}}
        for r in regions
    ]
    return json.dumps(features).encode()


@pytest.fixture(scope="module")
def weak_model(tmp_path_factory):
    """A small U-Net taught on the small nuclei of a slide of its own: the large ones are background to it."""
    import torch

    from wsi_assets.training.network import UNet
    from wsi_assets.training.train import export

    folder = tmp_path_factory.mktemp("weak")
    spec = SyntheticSlideSpec(width=1024, height=1024, mpp=MPP, seed=11, tissue_fraction=0.9)
    write_synthetic_slide(folder / "teacher.svs", spec)
    polygons, large = truth(spec)
    small = ReviewedCells(polygons=[p for p, big in zip(polygons, large) if not big])
    with open_slide(folder / "teacher.svs") as slide:
        tiles = reviewed_tiles(slide, "teacher", small, MPP, MPP)
    torch.manual_seed(0)
    start = export(
        UNet([8, 16, 32]).eval(),
        {"name": "untrained", "version": "0", "mpp": MPP, "widths": [8, 16, 32]},
        folder / "untrained.pt",
    )
    fine_tune_nuclei(
        start, tiles, [], folder / "weak.pt", {"name": "weak", "version": "small-only"}, WEAK_SETTINGS, log=lambda _: None
    )
    return folder / "weak.pt"


def make_branch(root, user, weak_model):
    """<user>'s branch `ft`: the slide, its truth imported as the current review, and branch.yaml naming the weak model."""
    spec = SyntheticSlideSpec(width=1536, height=1024, mpp=MPP, seed=3, tissue_fraction=0.9)
    (root / f"{user}/inputs/ft").mkdir(parents=True)
    write_synthetic_slide(root / f"{user}/inputs/ft/s1.svs", spec)
    polygons, large = truth(spec)
    regions = [shapely.box(x, y, x + 768, y + 512) for y in (0, 512) for x in (0, 768)]
    upload = root / f"{user}/reviews/ft/s1.geojson"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(review_bytes(polygons, large, regions))
    version, _ = import_review(root, user, "ft", upload, cell_review_changes)
    (root / f"{user}/models/ft").mkdir(parents=True)
    (root / f"{user}/models/ft/weak.pt").write_bytes(weak_model.read_bytes())
    (root / f"{user}/inputs/ft/branch.yaml").write_text(f"# {user}'s fine-tuning branch\nmpp: 0.5\nmodel: weak.pt\n")
    return version, polygons, large


@pytest.fixture
def branch(tmp_path, weak_model):
    root = tmp_path / "user_files"
    return (root, *make_branch(root, "alice", weak_model))


def large_recall(model_file, root, polygons, large) -> float:
    """Of the large nuclei in the held-out tiles, the share the model finds (IoU >= 0.5)."""
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    cells = ReviewedCells(polygons=polygons, regions=[shapely.box(x, y, x + 768, y + 512) for y in (0, 512) for x in (0, 768)])
    with open_slide(root / "alice/inputs/ft/s1.svs") as slide:
        _, held = split_held_out(reviewed_tiles(slide, "s1", cells, MPP, MPP))
    large_cells = ReviewedCells(polygons=[p for p, big in zip(polygons, large) if big])
    segmenter = TorchScriptSegmenter(str(model_file), device="cpu")
    found = total = 0
    with open_slide(root / "alice/inputs/ft/s1.svs") as slide:
        for tile in held:
            big = [
                t
                for t in reviewed_tiles(
                    slide, "s1", ReviewedCells(polygons=large_cells.polygons, regions=[shapely.box(*tile.box)]), MPP, MPP
                )
            ][0]
            predicted = np.asarray(segmenter.segment_batch(tile.rgb[None]))[0].astype(np.int32)
            matches = match_instances(predicted, big.labels)
            found, total = found + matches.tp, total + big.cells
    return found / total


def assert_each_phase_is_announced_and_reports_while_it_runs(lines: list[str]) -> None:
    """The first line comes before any tile is read; reading, training, scoring and measuring each report while they run."""

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    assert lines[0].startswith("fine-tuning alice/ft from 1 current cell review(s)"), lines[:3]
    assert lines[1].startswith("review 1/1 s1.geojson: ") and "4 regions" in lines[1]
    reading = [line for line in lines if line.startswith("reading s1.geojson:")]
    count = len(reading)
    assert count >= 6 and [line.split()[2] for line in reading] == [f"{n}/{count}" for n in range(1, count + 1)], reading
    assert first(f"^reading s1.geojson: {count}/{count}") < first("tiles to learn from") < first(r"^fine-tuning \d+ steps")
    steps = FINE_TUNE.steps
    assert first(rf"^fine-tuning step 1/{steps} steps") < first(rf"^fine-tuning step {steps}/{steps} steps.*loss")
    assert (
        first("^scoring the branch model")
        < first(r"^scoring before: 1/\d+ slide tiles")
        < first("^scoring the fine-tuned model")
        < first(r"^scoring after: 1/")
    )
    assert first("^measuring the reviewer's classified cells") < first(r"^measuring reviewed cells: 1/\d+ slide tiles")
    assert lines[-1].startswith("done: better")


@pytest.mark.slow
def test_a_model_that_misses_large_nuclei_learns_them_from_the_review_and_is_registered(branch):
    root, version, polygons, large = branch
    upload_hash = hashlib.sha256((root / "alice/reviews/ft/s1.geojson").read_bytes()).hexdigest()
    weak = root / "alice/models/ft/weak.pt"

    # No training steps: the same model, so not better: kept aside, branch.yaml untouched.
    settings_before = (root / "alice/inputs/ft/branch.yaml").read_text()
    unchanged = finetune_branch(root, "alice", "ft", FineTuneSettings(steps=0, batch=8, crop=96), log=lambda _: None)
    assert not unchanged.registered and unchanged.why.startswith("not better")
    assert unchanged.after == unchanged.before
    assert "/candidates/" in unchanged.model_file and (root / unchanged.model_file).is_file()
    assert (root / "alice/inputs/ft/branch.yaml").read_text() == settings_before

    lines: list[str] = []
    # every_s=0: each item of a long phase is reported, so the reports made during a phase are seen.
    outcome = finetune_branch(root, "alice", "ft", FINE_TUNE, log=lines.append, every_s=0)
    assert outcome.registered, outcome.why
    assert_each_phase_is_announced_and_reports_while_it_runs(lines)
    assert outcome.after["score"] >= outcome.before["score"] + 0.05, (outcome.before, outcome.after)
    new_model = resolve_branch_model(root, "alice", "ft", outcome.model_file.rsplit("/", 1)[1])
    assert new_model.parent == (root / "alice/models/ft").resolve()
    settings_text = (root / "alice/inputs/ft/branch.yaml").read_text()
    assert (
        f"model: {new_model.name}" in settings_text
        and "# alice's fine-tuning branch" in settings_text
        and "mpp: 0.5" in settings_text
    )
    assert list((root / "alice/models/ft").glob("branch.yaml.*.before-model"))[0].read_text() == settings_before

    # It learned the kind it missed: large nuclei on the held-out tiles.
    before, after = large_recall(weak, root, polygons, large), large_recall(new_model, root, polygons, large)
    assert after >= before + 0.2, (before, after)

    # The card names the review version it learned from, and the CPU runtimes' network is embedded.
    from wsi_assets.segmentation.torchscript import read_embedded_file, read_model_card

    card = read_model_card(new_model)
    assert [r["sha256"] for r in card["reviews"]] == [version.sha256]
    assert card["fine_tuning"]["base_model"]["file"] == "weak.pt" and card["cpu_runtimes"]["network"]
    assert read_embedded_file(new_model, card["cpu_runtimes"]["network"])
    assert (
        json.loads(new_model.with_name(new_model.stem + ".model_card.json").read_text())["evaluation"]["after"] == outcome.after
    )
    assert hashlib.sha256((root / "alice/reviews/ft/s1.geojson").read_bytes()).hexdigest() == upload_hash

    # The classifier learned the reviewer's classes: registered as branch.yaml's classifier, read by the classification step.
    from wsi_assets.cells.cell_classifier import load_classifier
    from wsi_assets.finetuning.branch_model import resolve_branch_classifier

    refit = outcome.classifier
    assert refit["registered"] and refit["after"]["macro_f1"] >= refit["before"]["macro_f1"] + 0.1, refit
    name = refit["file"].rsplit("/", 1)[1]
    assert f"classifier: {name}" in (root / "alice/inputs/ft/branch.yaml").read_text()
    assert load_classifier(resolve_branch_classifier(root, "alice", "ft", name)).info["reviews"][0]["sha256"] == version.sha256
    assert not unchanged.classifier["registered"]


def test_bad_branch_states_fail_with_one_line(tmp_path):
    root = tmp_path / "user_files"
    (root / "bob/inputs/empty").mkdir(parents=True)
    with pytest.raises(TooFewReviewedTiles, match="no imported cell reviews for bob/empty"):
        finetune_branch(root, "bob", "empty", FineTuneSettings(steps=0), log=lambda _: None)
    (root / "bob/inputs/empty/branch.yaml").write_text("model: gone.pt\n")
    with pytest.raises(BranchModelMissing, match="names model 'gone.pt', which is not in bob/models/empty/"):
        finetune_branch(root, "bob", "empty", FineTuneSettings(steps=0), log=lambda _: None)
    with pytest.raises(Exception, match="outside bob/"):
        resolve_branch_model(root, "bob", "empty", "../../../alice/models/x.pt")


@pytest.mark.slow
def test_the_branch_runs_its_own_model_and_the_job_reports_its_verdict(user_files_root, dagster_instance, weak_model):
    """Through Dagster: process_slide segments with the model branch.yaml names; finetune_from_reviews runs per branch."""
    from wsi_assets.definitions import defs
    from wsi_assets_tests.conftest import run_process_slide

    root = user_files_root
    make_branch(root, "ftuser", weak_model)
    slide = root / "ftuser/inputs/ft/s1.svs"
    _, processed = run_process_slide(dagster_instance, root, "ftuser", "ft", slide, "s1")
    assert processed.success
    provenance = json.loads((root / "ftuser/outputs/ft/s1/segmentation/summary.json").read_text())
    assert provenance["segmenter"] == "weak", provenance  # the model card's name: the branch's model, not the shipped one

    settings_before = (root / "ftuser/inputs/ft/branch.yaml").read_text()
    dagster_instance.add_dynamic_partitions("branches", ["ftuser/ft", "ftuser/none"])
    job = defs.resolve_job_def("finetune_from_reviews")
    config = {"ops": {"branch_nucleus_model": {"config": {"steps": 0, "base_images": 0}}}}
    result = job.execute_in_process(instance=dagster_instance, partition_key="ftuser/ft", run_config=config, raise_on_error=False)
    assert result.success
    metadata = result.asset_materializations_for_node("branch_nucleus_model")[0].metadata
    assert metadata["registered"].value is False and metadata["verdict"].value.startswith("not better")
    assert (root / "ftuser/inputs/ft/branch.yaml").read_text() == settings_before

    failed = job.execute_in_process(
        instance=dagster_instance, partition_key="ftuser/none", run_config=config, raise_on_error=False
    )
    assert not failed.success
    failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("no imported cell reviews for ftuser/none") and "\n" not in message


def test_a_review_without_regions_gives_tiles_over_all_its_cells_aligned_with_the_pixels(tmp_path):
    """No annotation: the whole review counts; tiles at the model's 0.5 µm/px from a 0.25 µm/px slide put each cell on its nucleus."""
    spec = SyntheticSlideSpec(width=1024, height=768, mpp=0.25, seed=5, tissue_fraction=0.9)
    write_synthetic_slide(tmp_path / "s.svs", spec)
    polygons, _ = truth(spec)
    with open_slide(tmp_path / "s.svs") as slide:
        tiles = reviewed_tiles(slide, "s", ReviewedCells(polygons=polygons, classes=["epithelial"] * len(polygons)), 0.25, MPP)
    assert sum(t.cells for t in tiles) == len(polygons) and all(t.rgb.shape[:2] == t.labels.shape for t in tiles)
    assert max(max(t.rgb.shape[:2]) for t in tiles) <= 256  # 256 model px a tile at most
    inside = np.concatenate([t.rgb[t.labels > 0].mean(axis=1) for t in tiles])
    outside = np.concatenate([t.rgb[t.labels == 0].mean(axis=1) for t in tiles])
    assert inside.mean() < outside.mean() - 40, (inside.mean(), outside.mean())  # the labels sit on the dark nuclei
    area_model_px = np.mean([np.bincount(t.labels.ravel())[1:].mean() for t in tiles])
    assert area_model_px == pytest.approx(np.mean([p.area for p in polygons]) / 4, rel=0.15)
    assert all(set(t.classes.values()) == {"epithelial"} for t in tiles)
    train, held = split_held_out(tiles)
    assert len(held) == len(tiles) // 3 and not {id(t) for t in train} & {id(t) for t in held}
    with pytest.raises(TooFewReviewedTiles, match="needs at least 2"):
        split_held_out(tiles[:1])
