"""The fluorescence nucleus model's training: a split of whole experiments, resumable training,
and an exported file that keeps the model contract for a 2-D channel of any scale."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from wsi_assets.cli.train_fluorescence import build_parser
from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
from wsi_assets.training import checkpoints
from wsi_assets.training.fluorescence_data import SPLIT_FILE, read_split, split_leaks
from wsi_assets.training.fluorescence_train import export, model_card, train
from wsi_assets.training.network import UNet

TINY = [
    "--widths",
    "4,8",
    "--batch",
    "2",
    "--crop",
    "32",
    "--reference-diameter",
    "8",
    "--checkpoint-minutes",
    "0",
    "--validate-minutes",
    "0",
    "--log-every",
    "1",
    "--lr",
    "1e-2",
]


def test_the_shipped_split_holds_out_whole_experiments():
    split = read_split()
    assert split_leaks(split) == []
    assert split["stem"].is_unique
    held = split["held_out"].mean()
    assert 0.15 <= held <= 0.20, f"{held:.1%} of the images are held out"


def test_an_experiment_on_both_sides_is_caught():
    split = read_split().copy()
    experiment = split.loc[split["held_out"], "experiment"].iloc[0]
    first = split.index[split["experiment"] == experiment][0]
    split.loc[first, "held_out"] = False
    assert split_leaks(split) == [experiment]


def _disc_field(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a dark noisy background, and their instance labels."""
    gray = rng.normal(10, 2, (size, size)).clip(0, 255)
    labels = np.zeros((size, size), np.uint16)
    for i, (y, x) in enumerate(((12, 12), (12, 34), (34, 20))):
        cv2.circle(labels, (int(x + rng.integers(-2, 3)), int(y + rng.integers(-2, 3))), 5, i + 1, -1)
    gray[labels > 0] += 120
    return gray.astype(np.uint8), labels


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, Path]:
    """Six labelled fields in the shared set's layout, two experiments, one of them held out."""
    folder = tmp_path_factory.mktemp("fluo")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        gray, labels = _disc_field(rng)
        cv2.imwrite(str(folder / "images" / f"f{i}.png"), gray)
        cv2.imwrite(str(folder / "labels" / f"f{i}.png"), labels)
        rows.append({"stem": f"f{i}", "size": "48x48", "experiment": f"e{i // 4}", "held_out": i >= 4})
    split = folder / "split.csv"
    pd.DataFrame(rows).to_csv(split, index=False)
    return folder, split


def _run(folder: Path, split: Path, ckpt: Path, *extra: str) -> dict:
    args = build_parser().parse_args(["--data", str(folder), "--split", str(split), "--checkpoints", str(ckpt), *TINY, *extra])
    return train(args, log=lambda message: None)


def test_training_resumes_from_the_newest_checkpoint(tiny_set, tmp_path):
    folder, split = tiny_set
    straight = _run(folder, split, tmp_path / "straight", "--steps", "5")
    killed = _run(folder, split, tmp_path / "resumed", "--steps", "5", "--stop-at-step", "3")
    assert killed["step"] == 3
    assert checkpoints.list_checkpoints(tmp_path / "resumed")[-1][0] == 3
    resumed = _run(folder, split, tmp_path / "resumed", "--steps", "5")
    assert resumed["step"] == 5
    logged = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5], "the resumed run went on from step 3, not from 0"
    # the same weights as a run never interrupted: network, optimiser and random states all came back
    for name, tensor in straight["net"].items():
        assert torch.equal(tensor, resumed["net"][name]), name


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    widths = [4, 8, 16, 24, 32]
    config = {"widths": widths, "reference_diameter": 16.0, "scale_range": [0.6, 1.6], "batch": 2, "crop": 32}
    out = tmp_path_factory.mktemp("model") / "fluo.pt"
    return export(UNet(widths).eval(), out, model_card(widths, config, 0, 0.0, None, "test"))


def test_exported_model_takes_one_channel_of_any_scale(exported):
    module = torch.jit.load(str(exported))
    rng = np.random.default_rng(1)
    gray, _ = _disc_field(rng, 37)
    as_uint8 = torch.from_numpy(gray.astype(np.float32))[None, None].expand(1, 3, -1, -1)
    labels = module(as_uint8)
    assert labels.shape == (1, 1, 37, 37) and labels.dtype == torch.int32
    # a 16-bit camera's counts (256x) or a 0..1 float image: the module normalises them alike
    assert torch.equal(module(as_uint8 * 256.0), labels)
    assert torch.equal(module(as_uint8 / 255.0), labels)


def test_exported_model_card_and_the_segmenter_that_loads_it(exported):
    card = json.loads(exported.with_name("fluo.model_card.json").read_text())
    assert card["modality"] == "fluorescence"
    assert card["nucleus_scale"]["reference_diameter_px"] == 16.0
    assert card["input"]["normalisation"]["where"] == "inside the TorchScript module"
    assert card["colour_gate"] is False, "bright nuclei would be dropped as glass by the H&E colour gate"
    assert card["training"]["licences"] == ["CC0 1.0"]
    assert card["held_out_split"]["file"].endswith(SPLIT_FILE.name)
    segmenter = TorchScriptSegmenter(exported, device="cpu")
    assert segmenter.runtime == "torch", "no network.onnx: the CPU runtimes would skip the normalisation"
    assert segmenter.colour_gate is False
