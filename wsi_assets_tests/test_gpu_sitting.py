"""The GPU sitting command, run on the CPU at a tiny size: it must work end to end before a GPU is lent.

`benchmarks/gpu_sitting.py` is what a lent GPU runs (train from the shipped model, score it against
the shipped one, measure the whole-slide speed). A GPU session is too short to debug in, so the
same command runs here with two training steps, on the packed data it would carry there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from wsi_assets.segmentation.torchscript import TorchScriptSegmenter, read_model_card
from wsi_assets.training import split
from wsi_assets_tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SITTING = REPO / "benchmarks" / "gpu_sitting.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    if not (SHARED_DATA / "nuclei_train" / "manifest.csv").is_file():
        pytest.skip(f"{SHARED_DATA / 'nuclei_train'} is not here (../shared is absent on a fresh clone)")
    out = tmp_path_factory.mktemp("packed") / "nuclei_train"
    done = subprocess.run(
        [sys.executable, str(SITTING), "pack", "--data", str(SHARED_DATA / "nuclei_train"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _short_sitting(out: Path, packed: Path, *options: str) -> tuple[Path, dict]:
    """Two training steps of the sitting script on the CPU, with `options` added; its sitting.json."""
    command = [
        sys.executable,
        str(SITTING),
        "--minutes",
        "5",
        "--max-steps",
        "2",
        "--batch",
        "4",
        "--crop",
        "128",
        "--workers",
        "0",
        "--tune-images",
        "1",
        *options,
        "--data",
        str(packed),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "sitting.json").read_text())


@pytest.fixture(scope="module")
def sitting(tmp_path_factory, packed):
    out = tmp_path_factory.mktemp("sitting")
    slide = ["--slide-size", "2048x2048", "--read-threads", "2", "--slide-batch", "2"]
    return _short_sitting(out, packed, *slide, "--dataset-share", "consep_train=0.25", "--work", str(out / "work"))


def test_pack_keeps_every_image_at_the_model_resolution_and_fits_a_device_call(packed):
    manifest = pd.read_csv(packed / "manifest.csv")
    original = pd.read_csv(SHARED_DATA / "nuclei_train" / "manifest.csv")
    assert len(manifest) == len(original)
    assert set(manifest["microns_per_pixel"].astype(str)) == {"0.5"}
    size = sum(p.stat().st_size for p in packed.rglob("*") if p.is_file())
    assert size < 20e6, f"{size / 1e6:.1f} MB: too big to travel with the wheels in a 64 MiB device call"


def test_sitting_trains_scores_and_measures_on_the_cpu(sitting, packed):
    out, result = sitting
    assert result["training"]["steps"] == 2
    assert result["training"]["dataset_shares"] == {"consep_train": 0.25}
    model = out / result["model_file"]
    card = read_model_card(model)
    assert card["version"] == "4"
    # Trained on every image outside the held-out split, CoNSeP included, none held out.
    manifest = pd.read_csv(packed / "manifest.csv")
    stems = [Path(p).stem for p in manifest["image"]]
    training = sum(not split.is_held_out(d, s) for d, s in zip(manifest["dataset"], stems))
    assert card["training"]["images"] == training and "consep_train" in card["training"]["datasets"]
    assert card["held_out_split"]["consep_held_out_tiles"]
    # The written model is a working segmenter, and both models were scored on the held-out split.
    assert TorchScriptSegmenter(model, device="cpu").mpp == 0.5
    for name in ("new", "start"):
        assert {"consep_train", "monuseg2018_train", "all"} <= set(result["held_out"][name])
    assert result["new_is_better"] == (result["held_out_quality"]["new"] > result["held_out_quality"]["start"])
    slide = result["whole_slide"]
    # Two training steps move the weights a little, and the thresholds are re-tuned: counts stay close.
    assert slide["speed_ratio"] > 0 and abs(slide["nuclei_found"] - slide["nuclei_drawn"]) <= 0.02 * slide["nuclei_drawn"]
    assert (out / "sitting.log").read_text().count("held-out scores") == 2


def test_sitting_refuses_a_missing_data_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SITTING), "--minutes", "1", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "no labelled images" in done.stderr


@pytest.fixture(scope="module")
def student_sitting(tmp_path_factory, packed):
    out = tmp_path_factory.mktemp("student")
    return _short_sitting(out, packed, "--slide-size", "", "--widths", "8,16,32,64,96", "--version", "5-half")


def test_a_student_sitting_writes_a_narrower_model_and_holds_it_to_the_accuracy_gate(student_sitting):
    """`--widths` trains a half-width student of the shipped model (the CPU-speed route of issue 12);
    two steps are far from enough, so the gate against the shipped model must say it fails."""
    out, result = student_sitting
    card = read_model_card(out / result["model_file"])
    assert card["widths"] == [8, 16, 32, 64, 96] and "distilled from version" in card["architecture"]
    assert result["training"]["widths"] == [8, 16, 32, 64, 96] and result["training"]["teacher"]
    assert card["embedding"]["channels"] == [32, 64]  # the decoder levels at strides 4 and 8
    assert TorchScriptSegmenter(out / result["model_file"], device="cpu").embedding["width"] == 96
    assert result["new_passes_gate"] is False and result["gate_failures"]
    assert "whole_slide" not in result
