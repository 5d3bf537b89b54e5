"""The nucleus classifier network: its crops, resumable training, and the exported file's contract."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.nucleus_cnn import (
    CROP,
    BadNucleusCrops,
    NucleusCNN,
    load_nucleus_cnn,
    nucleus_cnn_from_bytes,
    nucleus_crops,
)
from wsi_assets.cells.stain_normalisation import STAIN_NORMALISATION, normalise_stains
from wsi_assets.training.checkpoints import latest_checkpoint
from wsi_assets.training.nucleus_cnn import train
from wsi_assets.training.nucleus_cnn_cache import ANNOTATED, centre, load_cache, read_crop
from wsi_assets.training.nucleus_cnn_export import checkpoint_network, export_network
from wsi_assets.training.nucleus_cnn_net import NucleusNet, network_onnx

TYPES = ["inflammatory", "epithelial", "spindle"]


def _typed_folder(root):
    """Three CoNSeP-layout crops (two training tiles, one held out), nuclei of three drawn kinds."""
    rng = np.random.default_rng(1)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    rows = []
    for stem in ("train_1_000", "train_2_000", "train_5_000"):
        rgb = np.full((256, 256, 3), (235, 200, 225), np.uint8)
        labels = np.zeros((256, 256), np.uint16)
        for label in range(1, 13):
            kind = (label - 1) % 3
            x, y = (int(v) for v in rng.integers(30, 226, 2))
            mask = np.zeros((256, 256), np.uint8)
            axes = [(8, 8), (16, 11), (20, 4)][kind]
            cv2.ellipse(mask, (x, y), axes, int(rng.integers(0, 180)), 0, 360, 1, -1)
            mask &= labels == 0
            labels[mask > 0] = label
            rgb[mask > 0] = [(60, 30, 110), (120, 70, 150), (90, 50, 130)][kind]
            rows.append((stem, label, TYPES[kind]))
        cv2.imwrite(str(root / "images" / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"{stem}.png"), labels)
    with open(root / "types.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stem", "label", "class"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def typed_folder(tmp_path_factory):
    return _typed_folder(tmp_path_factory.mktemp("typed"))


def _quiet(*_):
    pass


def _train(run, folder, steps):
    return train(
        run, folder, steps=steps, batch=8, checkpoint_minutes=1e9, eval_every=1000, log_every=1, segmenter=None, log=_quiet
    )


def test_each_crop_carries_its_own_nucleus_mask_and_the_image_around_it():
    rgb = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    labels = np.zeros((100, 120), np.int32)
    labels[40:50, 30:40] = 3  # 10x10 square, centroid (35, 45)
    labels[45:55, 40:50] = 7  # its neighbour, inside the first one's window
    labels[2:6, 110:116] = 9  # at the image's corner: the window leaves the image
    ids, crops = nucleus_crops(rgb, labels)
    assert ids.tolist() == [3, 7, 9] and crops.shape == (3, 4, CROP, CROP) and crops.dtype == np.uint8
    half = CROP // 2
    first = crops[0]
    assert (first[3] > 0).sum() == (labels == 3).sum()  # the whole nucleus, and not its neighbour
    assert np.array_equal(first[3] > 0, labels[45 - half : 45 + half, 35 - half : 35 + half] == 3)
    assert np.array_equal(first[:3].transpose(1, 2, 0), rgb[45 - half : 45 + half, 35 - half : 35 + half])
    assert (crops[1][3] > 0).sum() == (labels == 7).sum()
    assert (crops[2][3] > 0).sum() == (labels == 9).sum()


def test_crops_refuse_labels_of_another_size():
    with pytest.raises(BadNucleusCrops, match="same µm/px"):
        nucleus_crops(np.zeros((50, 50, 3), np.uint8), np.zeros((100, 100), np.int32))


@pytest.fixture(scope="module")
def runs(typed_folder, tmp_path_factory):
    """A training of 4 steps straight, and one stopped after 2 and resumed to 4 (with what it said)."""
    root = tmp_path_factory.mktemp("runs")
    whole = _train(root / "whole", typed_folder, 4)
    first = _train(root / "stopped", typed_folder, 2)
    stopped_at = latest_checkpoint(root / "stopped").name
    messages = []
    resumed = train(root / "stopped", steps=4, batch=8, checkpoint_minutes=1e9, eval_every=1000, log_every=1, log=messages.append)
    return {"root": root, "whole": whole, "first": first, "stopped_at": stopped_at, "resumed": resumed, "messages": messages}


def test_training_resumes_from_its_checkpoint_as_if_never_stopped(runs):
    root = runs["root"]
    assert runs["whole"]["step"] == 4 and runs["first"]["step"] == 2 and runs["stopped_at"] == "step00000002.ckpt"
    assert runs["resumed"]["step"] == 4 and "resumed at step 2 of 4" in runs["messages"]
    a, _ = checkpoint_network(latest_checkpoint(root / "whole"))
    b, _ = checkpoint_network(latest_checkpoint(root / "stopped"))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name
    steps = [json.loads(line)["step"] for line in (root / "stopped" / "log.jsonl").read_text().splitlines() if "loss" in line]
    assert steps == [1, 2, 3, 4]


def test_training_needs_a_typed_folder_to_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="give --data"):
        train(tmp_path / "empty", None, steps=1)


@pytest.fixture(scope="module")
def torch_net():
    torch.manual_seed(0)
    return NucleusNet(len(CLASS_NAMES)).eval()


@pytest.fixture(scope="module")
def network(torch_net):
    return nucleus_cnn_from_bytes(network_onnx(torch_net), CLASS_NAMES)


def test_the_exported_network_gives_one_class_per_nucleus(network, torch_net):
    crops = np.random.default_rng(0).integers(0, 256, (300, 4, CROP, CROP), dtype=np.uint8)  # over one batch
    classes = network.predict_crops(crops)
    assert classes.shape == (300,) and set(classes.tolist()) <= set(CLASS_NAMES)
    with torch.no_grad():
        expected = torch.softmax(torch_net(torch.from_numpy(crops[:8].astype(np.float32))), 1).numpy()
    assert np.allclose(network.probabilities(crops[:8]), expected, atol=1e-4)  # the file computes what was trained
    rgb = np.full((80, 80, 3), 200, np.uint8)
    labels = np.zeros((80, 80), np.int32)
    labels[10:20, 10:20], labels[50:60, 40:55] = 4, 11
    assert set(network.classify(rgb, labels)) == {4, 11}


@pytest.mark.parametrize(
    "shape,dtype",
    [((5, 3, CROP, CROP), np.uint8), ((5, 4, 32, 32), np.uint8), ((4, CROP, CROP), np.uint8), ((5, 4, CROP, CROP), np.float32)],
)
def test_the_network_refuses_crops_of_the_wrong_shape(network, shape, dtype):
    with pytest.raises(BadNucleusCrops, match="nucleus crops must be"):
        network.predict_crops(np.zeros(shape, dtype))


def test_an_exported_file_loads_with_its_card(runs, tmp_path):
    card = export_network(runs["root"] / "whole", tmp_path / "cnn.onnx", timing_crops=64)
    assert card["training"]["cpu_seconds"] > 0 and card["data"]["held_out_tiles"][0] == "train_5"
    assert set(card["validation"]["given_nuclei"]["annotated"]) >= set(CLASS_NAMES)
    model = load_nucleus_cnn(tmp_path / "cnn.onnx")
    assert model.classes == CLASS_NAMES and len(model.predict_crops(np.zeros((3, 4, CROP, CROP), np.uint8))) == 3
    (tmp_path / "cnn.model_card.json").unlink()
    with pytest.raises(FileNotFoundError, match="no model card"):
        load_nucleus_cnn(tmp_path / "cnn.onnx")


def test_training_crops_are_cut_from_the_stain_normalised_image_as_inference_cuts_them(runs, typed_folder, network):
    cache = load_cache(runs["root"] / "whole" / "crops.npz")
    assert str(cache["normalisation"]) == STAIN_NORMALISATION
    rgb, labels = read_crop(typed_folder, str(cache["stems"][0]))
    rows = np.flatnonzero((cache["stem_index"] == 0) & (cache["outlines"] == ANNOTATED))
    normalised = NucleusCNN(network.classes, {"normalisation": STAIN_NORMALISATION}, network.session)
    ids, crops = normalised.crops(rgb, labels)
    assert np.array_equal(centre(cache["crops"][rows], CROP), crops)  # training saw what inference shows
    assert np.array_equal(crops[:, :3], nucleus_crops(normalise_stains(rgb), labels)[1][:, :3])  # the whole image normalised
    assert not np.array_equal(network.crops(rgb, labels)[1], crops)  # a v1 card (no normalisation) keeps raw pixels


def test_a_run_never_mixes_raw_and_normalised_crops(runs):
    with pytest.raises(ValueError, match="stain normalisation hed-p99-v1, not none"):
        train(runs["root"] / "whole", steps=5, batch=8, normalisation=None, log=_quiet)


def test_a_new_run_starts_from_another_checkpoint_s_averaged_weights(runs, typed_folder, tmp_path):
    start = latest_checkpoint(runs["root"] / "whole")
    train(
        tmp_path / "next",
        typed_folder,
        steps=1,
        batch=8,
        checkpoint_minutes=1e9,
        eval_every=1000,
        segmenter=None,
        init=start,
        peak_lr=0.0,
        log=_quiet,
    )
    before, _ = checkpoint_network(start)
    after, state = checkpoint_network(latest_checkpoint(tmp_path / "next"))
    assert state["init"].startswith(start.name) and state["normalisation"] == STAIN_NORMALISATION
    for (name, x), y in zip(before.state_dict().items(), after.state_dict().values()):
        if x.dtype.is_floating_point and "running" not in name:
            assert torch.allclose(x, y, atol=1e-6), name  # one step at learning rate 0 leaves the weights as they were
