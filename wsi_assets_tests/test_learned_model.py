"""The learned-model path: TorchScript contract, configuration, devices, determinism, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wsi_assets.defs.resources import SegmentationResource
from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.classical import ClassicalSegmenter
from wsi_assets.segmentation.image import segment_image
from wsi_assets.segmentation.metrics import f1_at_iou
from wsi_assets.segmentation.protocol import Segmenter
from wsi_assets.segmentation.registry import default_segmenter, get_segmenter
from wsi_assets.segmentation.torchscript import (
    ModelLoadError,
    TorchScriptSegmenter,
    read_model_card,
    resolve_device,
)
from wsi_assets.training.network import UNet
from wsi_assets.training.train import export

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NUCLEI_TRAIN = SHARED_DATA / "nuclei_train"


class DarkPixels(nn.Module):
    """A foreign model: one instance made of every pixel darker than `level` (no model card)."""

    def __init__(self, level: float = 150.0):
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=1, keepdim=True) < self.level).to(torch.int32)


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B,3,H,W) floats, not labels


class HalfSize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, ::2, ::2].to(torch.int32)


def save_scripted(module: nn.Module, path: Path, card: dict | None = None) -> Path:
    extra = {"model_card.json": json.dumps(card)} if card else {}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A freshly built (untrained, seeded) model in this project's format, card embedded."""
    torch.manual_seed(0)
    net = UNet([4, 8]).eval()
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    return export(net, {"name": "tiny", "version": "0", "mpp": 0.5, "input": {"range": "0..255"}}, path, fg_threshold=0.45)


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    rng = np.random.default_rng(0)
    tiles = np.full((2, 96, 80, 3), (235, 170, 200), np.uint8)
    tiles[:, 30:45, 20:40] = (90, 60, 150)
    return np.clip(tiles + rng.normal(0, 5, tiles.shape), 0, 255).astype(np.uint8)


def test_torchscript_contract_file_in_labels_out(tiny_model, tiles):
    segmenter = TorchScriptSegmenter(tiny_model, device="cpu")
    assert isinstance(segmenter, Segmenter)
    assert (segmenter.name, segmenter.version, segmenter.mpp, segmenter.device) == ("tiny", "0", 0.5, "cpu")
    labels = segmenter.segment_batch(tiles)
    assert labels.shape == tiles.shape[:3] and labels.dtype == np.int32
    for tile in labels:  # consecutive ids per tile
        ids = np.unique(tile)
        assert ids[0] >= 0 and np.array_equal(ids[ids > 0], np.arange(1, (ids > 0).sum() + 1))
    # the raw module follows the contract too: float RGB (B,3,H,W) in, (B,1,H,W) labels out
    out = torch.jit.load(str(tiny_model))(torch.from_numpy(tiles).permute(0, 3, 1, 2).float())
    assert out.shape == (2, 1, 96, 80) and out.dtype == torch.int32


def test_model_card_is_embedded_and_beside_the_file(tiny_model):
    card = read_model_card(tiny_model)
    assert card["mpp"] == 0.5 and card["postprocessing"]["fg_threshold"] == 0.45
    assert json.loads(tiny_model.with_name("tiny.model_card.json").read_text())["name"] == "tiny"


def test_cpu_output_is_deterministic(tiny_model, tiles):
    first = TorchScriptSegmenter(tiny_model, device="cpu").segment_batch(tiles)
    again = TorchScriptSegmenter(tiny_model, device="cpu").segment_batch(tiles.copy())
    assert np.array_equal(first, again)


def test_device_selection(tiny_model):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert TorchScriptSegmenter(tiny_model).torch_device.type == expected
    assert TorchScriptSegmenter(tiny_model, device="cpu").device == "cpu"
    assert SegmentationResource(model=str(tiny_model), device="cpu").segmenter().device == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            TorchScriptSegmenter(tiny_model, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-ish")


def test_user_model_chosen_by_configuration(tiny_model, tmp_path, tiles):
    chosen = SegmentationResource(model=str(tiny_model)).segmenter()
    assert isinstance(chosen, TorchScriptSegmenter) and chosen.path == tiny_model.resolve()
    assert SegmentationResource(model="classical").segmenter().name == ClassicalSegmenter.name
    assert SegmentationResource().segmenter() is default_segmenter()
    # a foreign model without a card: its µm/px comes from the configuration, or a sidecar card
    foreign = save_scripted(DarkPixels(), tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="µm/px"):
        SegmentationResource(model=str(foreign)).segmenter()
    configured = SegmentationResource(model=str(foreign), model_mpp=0.25).segmenter()
    assert configured.mpp == 0.25
    assert configured.segment_batch(tiles)[0, 35, 30] == 1
    labels = segment_image(tiles[0], 0.5, model=configured)
    assert labels.shape == tiles.shape[1:3] and labels.max() == 1
    sidecar = save_scripted(DarkPixels(), tmp_path / "carded.pt")
    sidecar.with_name("carded.model_card.json").write_text(json.dumps({"name": "dark", "mpp": 0.5}))
    assert segment_image(tiles[0], 0.5, model=str(sidecar)).max() == 1  # a path works too


def test_percentile_input_range_for_instanseg_style_models(tmp_path, tiles):
    # models that expect per-channel percentile-normalised input (InstanSeg) see ~0..1 values
    path = save_scripted(DarkPixels(level=0.5), tmp_path / "normalised.pt")
    raw = TorchScriptSegmenter(path, mpp=0.5)
    normalised = TorchScriptSegmenter(path, mpp=0.5, input_range="percentile")
    assert raw.segment_batch(tiles).max() == 0
    found = normalised.segment_batch(tiles)
    assert found[0, 35, 30] == 1 and found[0, 5, 5] == 0


@pytest.mark.parametrize("kind", ["missing", "corrupt", "truncated", "wrong_shape", "half_size", "not_labels"])
def test_clear_one_line_error_for_bad_model_files(kind, tmp_path, tiny_model):
    path = tmp_path / f"{kind}.pt"
    card = {"mpp": 0.5}
    if kind == "corrupt":
        path.write_bytes(b"definitely not a TorchScript archive" * 10)
    elif kind == "truncated":
        path.write_bytes(tiny_model.read_bytes()[:5000])
    elif kind == "wrong_shape":
        save_scripted(WrongShape(), path, card)
    elif kind == "half_size":
        save_scripted(HalfSize(), path, card)
    elif kind == "not_labels":

        class Fractional(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x[:, :1] / 7.0

        save_scripted(Fractional(), path, card)
    with pytest.raises(ModelLoadError) as caught:
        TorchScriptSegmenter(path, mpp=0.5)
    message = str(caught.value)
    assert "\n" not in message and path.name in message
    with pytest.raises(ValueError):  # ModelLoadError is a ValueError: configuration mistakes read as such
        SegmentationResource(model=str(path), model_mpp=0.5).segmenter()


def test_learned_is_the_shipped_model():
    segmenter = get_segmenter("learned")
    assert isinstance(segmenter, TorchScriptSegmenter) and segmenter.path == SHIPPED_MODEL_FILE
    assert get_segmenter("learned") is segmenter
    assert get_segmenter("default") is default_segmenter() and get_segmenter(None) is default_segmenter()
    card = read_model_card(SHIPPED_MODEL_FILE)
    assert card["mpp"] == segmenter.mpp == 0.5
    assert "CC BY-NC-SA 4.0" in card["training"]["licences"]
    assert SHIPPED_MODEL_FILE.stat().st_size < 16e6  # TorchScript + its network as ONNX for the CPU runtimes


def test_shipped_model_beats_classical_on_a_held_out_real_image():
    image = NUCLEI_TRAIN / "monuseg2018_train" / "images" / "TCGA-21-5784-01Z-00-DX1.png"
    if not image.exists() or not SHIPPED_MODEL_FILE.exists():
        pytest.skip(f"{image} or the shipped model not available")
    from wsi_assets.core.images import read_image_file_rgb
    from wsi_assets.training.data import read_labels
    from wsi_assets.training.split import is_held_out

    assert is_held_out("monuseg2018_train", image.stem)
    rgb = read_image_file_rgb(image)[:500, :500]  # a quarter of the 40x image, 0.25 µm/px
    true = read_labels(image.parent.parent / "labels" / image.name)[:500, :500]
    learned = segment_image(rgb, 0.25, model="learned")
    assert np.array_equal(learned, segment_image(rgb.copy(), 0.25, model="learned"))  # deterministic on CPU
    classical = segment_image(rgb, 0.25, model="classical")
    f1_learned, f1_classical = f1_at_iou(learned, true)["f1"], f1_at_iou(classical, true)["f1"]
    assert f1_learned > f1_classical + 0.1, (f1_learned, f1_classical)


def test_inference_optimisation_keeps_the_labels():
    """The segmenter runs the model frozen with batch norm folded; a real tile's labels are those of the file as saved."""
    image = NUCLEI_TRAIN / "monuseg2018_train" / "images" / "TCGA-21-5784-01Z-00-DX1.png"
    if not image.exists():
        pytest.skip(f"{image} not available")
    from wsi_assets.core.images import read_image_file_rgb

    segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu")
    assert not hasattr(segmenter.module, "maps")  # frozen: only forward is kept
    tile = read_image_file_rgb(image)[:256, :320]
    as_saved = torch.jit.load(str(SHIPPED_MODEL_FILE), map_location="cpu").eval()
    with torch.inference_mode():
        expected = as_saved(torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1)[None].float())[0, 0].numpy()
    got = segmenter.segment_batch(tile[None])[0]
    assert expected.max() > 20 and np.array_equal(got, expected)


def labelled_folder(folder: Path) -> Path:
    """A tiny images/ + labels/ folder of drawn tiles, the layout training reads."""
    import cv2

    from wsi_assets_tests.test_segmenter import draw_tile

    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for seed in (0, 1):
        rgb, labels = draw_tile(seed=seed, size=160)
        cv2.imwrite(str(folder / "images" / f"t{seed}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "labels" / f"t{seed}.png"), labels.astype(np.uint16))
    return folder


def test_training_continues_from_an_exported_model(tmp_path):
    """`--init` starts from a model file's weights (with a vanishing learning rate they stay put)."""
    from wsi_assets.training.train import TrainConfig, load_trained_net, train

    folder = labelled_folder(tmp_path / "labelled")
    torch.manual_seed(7)
    start = export(UNet([4, 8]).eval(), {"name": "start", "version": "0", "mpp": 0.5, "widths": [4, 8]}, tmp_path / "start.pt")
    out = tmp_path / "continued.pt"
    config = TrainConfig(data=folder, out=out, steps=1, batch=2, crop=64, widths=[4, 8], lr=1e-12, tune=False, init=start)
    card = train(config, log=lambda _: None)
    assert card["training"]["init"] == str(start)

    def weights(path: Path) -> dict:
        # parameters only: batch-norm running statistics move in any training step
        return {k: v.detach() for k, v in load_trained_net(path).named_parameters()}

    before, after = weights(start), weights(out)
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    fresh = TrainConfig(data=folder, out=tmp_path / "fresh.pt", steps=1, batch=2, crop=64, widths=[4, 8], lr=1e-12, tune=False)
    train(fresh, log=lambda _: None)
    other = weights(tmp_path / "fresh.pt")
    assert not all(torch.allclose(before[k], other[k], atol=1e-6) for k in before)


def test_train_and_evaluate_assets_on_a_labelled_folder(tmp_path, dagster_instance):
    """The training job end to end on a tiny images/ + labels/ folder (one optimiser step)."""
    from dagster import materialize

    from wsi_assets.defs.models import nuclei_model, nuclei_model_evaluation

    folder = labelled_folder(tmp_path / "labelled")
    out = tmp_path / "trained" / "model.pt"
    result = materialize(
        [nuclei_model, nuclei_model_evaluation],
        instance=dagster_instance,
        run_config={
            "ops": {
                "nuclei_model": {
                    "config": {
                        "data_folder": str(folder),
                        "steps": 1,
                        "output_path": str(out),
                        "version": "t",
                        "stain_jitter": 0.3,
                        "scale_jitter": 1.4,
                    }
                },
                "nuclei_model_evaluation": {"config": {"data_folder": str(folder), "data_mpp": 0.5, "device": "cpu"}},
            }
        },
    )
    assert result.success
    assert TorchScriptSegmenter(out).version == "t"
    card = read_model_card(out)
    assert card["training"]["images"] == 2 and card["mpp"] == 0.5
    assert (card["training"]["stain_jitter"], card["training"]["scale_jitter"]) == (0.3, 1.4)
    evaluation = result.asset_materializations_for_node("nuclei_model_evaluation")[0].metadata
    assert evaluation["model_source"].value == str(out)
    assert {"f1_at_0_5", "aji", "pq"} <= set(evaluation) and 0 <= evaluation["pq"].value <= 1
    assert "data:image/jpeg;base64," in evaluation["overlay"].value
