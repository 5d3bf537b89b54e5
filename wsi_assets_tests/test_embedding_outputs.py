"""The nucleus model's embedding levels: the shipped file gives them on every path (OpenVINO, ONNX
Runtime, torch) with the labels `segment_batch` gives, and a model that cannot give them says so."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.embeddings import segment_with_embeddings
from wsi_assets.segmentation.torchscript import CARD_NAME, TorchScriptSegmenter, read_model_card
from wsi_assets.slides.synthetic import SyntheticSlideSpec, render_region
from wsi_assets.training.onnx_export import ONNX_NAME, network_onnx
from wsi_assets.training.network import UNet
from wsi_assets.training.train import export, rebuild

INSTALLED = [name for name in ("openvino", "onnxruntime") if importlib.util.find_spec(name)]
# float32 runtimes against torch: ~1e-5 measured (benchmarks/embedding_outputs.py); OpenVINO hands the
# levels over as float16 (3 significant digits), the precision they are stored at.
TOLERANCE = {"atol": 1e-3, "rtol": 2e-3}


def synthetic_fields(count: int, height: int, width: int) -> np.ndarray:
    """(count, height, width, 3) fields of a synthetic H&E slide at 0.5 µm/px, nuclei in each."""
    spec = SyntheticSlideSpec(width=8_000, height=8_000, mpp=0.5, seed=5, tissue_fraction=0.9)
    return np.stack([render_region(spec, 1, 2_000 + i * 330, 2_100, width, height) for i in range(count)])


@pytest.fixture(scope="module")
def fields() -> np.ndarray:
    return synthetic_fields(3, 150, 170)  # not multiples of 16: the model pads, the maps are cropped back


@pytest.fixture(scope="module")
def torch_method_maps(fields):
    """The file as saved, its exported method called directly: what every path must reproduce."""
    module = torch.jit.load(str(SHIPPED_MODEL_FILE), map_location="cpu").eval()
    with torch.inference_mode():
        labels, quarter, eighth = module.labels_and_embedding_maps(torch.from_numpy(fields).permute(0, 3, 1, 2).float())
        forward_labels = module(torch.from_numpy(fields).permute(0, 3, 1, 2).float())
    assert torch.equal(labels, forward_labels)  # the method's labels are forward's
    return quarter.numpy(), eighth.numpy()


def test_the_shipped_card_names_the_levels():
    card = read_model_card(SHIPPED_MODEL_FILE)
    assert card["embedding"] == {"strides": [4, 8], "channels": [64, 128], "outputs": ["embedding_s4", "embedding_s8"]}
    sidecar = json.loads(SHIPPED_MODEL_FILE.with_name(SHIPPED_MODEL_FILE.stem + ".model_card.json").read_text())
    assert sidecar == card


@pytest.mark.parametrize("runtime", INSTALLED + ["torch"])
def test_each_path_gives_the_segment_batch_labels_and_the_torch_maps(runtime, fields, torch_method_maps):
    segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu", cpu_runtime=runtime)
    assert segmenter.runtime.split()[0] == runtime
    assert segmenter.embedding == {
        "model": "wsi-nuclei-unet",
        "version": "4",
        "strides": [4, 8],
        "channels": [64, 128],
        "width": 192,
    }
    expected = segmenter.segment_batch(fields)
    assert expected.max() > 5
    # three fields at once (side by side on OpenVINO with two cores), then one at a time
    for tiles, first in ((fields, 0), (fields[1:2], 1)):
        labels, maps = segmenter.segment_batch_with_embeddings(tiles)
        assert labels.dtype == np.int32 and np.array_equal(labels, expected[first : first + len(tiles)])
        assert len(maps) == len(tiles)
        for k, tile_maps in enumerate(maps):
            quarter, eighth = tile_maps.levels
            assert tile_maps.strides == (4, 8) and tile_maps.width == 192
            assert quarter.shape == (64, 38, 43) and eighth.shape == (128, 19, 22)  # ceil(150/s), ceil(170/s)
            assert quarter.dtype == (np.float16 if runtime == "openvino" else np.float32) and quarter.flags.c_contiguous
            np.testing.assert_allclose(quarter.astype(np.float32), torch_method_maps[0][first + k], **TOLERANCE)
            np.testing.assert_allclose(eighth.astype(np.float32), torch_method_maps[1][first + k], **TOLERANCE)
    assert float(np.abs(torch_method_maps[1]).max()) > 0.1  # the check compares real activations, not zeros


def test_segment_with_embeddings_uses_them(fields):
    segmenter = TorchScriptSegmenter(SHIPPED_MODEL_FILE, device="cpu")
    labels, maps = segment_with_embeddings(segmenter, fields[:1])
    assert np.array_equal(labels, segmenter.segment_batch(fields[:1])) and maps[0].width == 192


def _small_model(path, widths, card_extra=None):
    torch.manual_seed(0)
    card = {"name": "small", "version": "1", "mpp": 0.5, "widths": widths, **(card_extra or {})}
    return export(UNet(widths).eval(), card, path, fg_threshold=0.45, min_area=5)


def test_a_model_without_the_levels_gives_labels_alone(tmp_path, fields):
    path = _small_model(tmp_path / "shallow.pt", [4, 8])  # two levels: no decoder level at 1/4 or 1/8
    assert "embedding" not in read_model_card(path)
    for runtime in INSTALLED + ["torch"]:
        segmenter = TorchScriptSegmenter(path, device="cpu", cpu_runtime=runtime)
        assert segmenter.embedding is None
        labels, maps = segment_with_embeddings(segmenter, fields)
        assert maps is None and np.array_equal(labels, segmenter.segment_batch(fields))
        with pytest.raises(ValueError, match="gives no embedding"):
            segmenter.segment_batch_with_embeddings(fields)


def test_a_network_onnx_without_the_outputs_runs_maps_only(tmp_path, fields):
    """An older network.onnx beside a card that names the levels: the CPU runtimes cannot give
    them and say so; torch, whose module has the method, still can."""
    widths = [4, 4, 8, 8, 8]
    path = _small_model(tmp_path / "deep.pt", widths)
    card = read_model_card(path)
    assert card["embedding"]["channels"] == [8, 8]
    net = UNet(widths)
    net.load_state_dict(torch.jit.load(str(path)).net.state_dict())
    older = tmp_path / "older_onnx.pt"
    files = {CARD_NAME: json.dumps(card), ONNX_NAME: network_onnx(net.eval(), with_embedding=False)}
    torch.jit.save(torch.jit.load(str(path)), str(older), _extra_files=files)
    reference = TorchScriptSegmenter(path, device="cpu", cpu_runtime="torch")
    for runtime in INSTALLED:
        segmenter = TorchScriptSegmenter(older, device="cpu", cpu_runtime=runtime)
        assert segmenter.runner.outputs == ("maps",) and segmenter.embedding is None
        labels, maps = segment_with_embeddings(segmenter, fields)
        assert maps is None and np.array_equal(labels, reference.segment_batch(fields))
        with_levels = TorchScriptSegmenter(path, device="cpu", cpu_runtime=runtime)
        assert with_levels.runner.outputs == ("maps", "embedding_s4", "embedding_s8")
        assert with_levels.segment_batch_with_embeddings(fields)[1][0].levels[1].shape == (8, 19, 22)
    assert TorchScriptSegmenter(older, device="cpu", cpu_runtime="torch").embedding is not None


def test_rebuild_keeps_the_weights_the_post_processing_and_the_card(tmp_path, fields):
    path = _small_model(tmp_path / "first.pt", [4, 4, 8, 8, 8], {"held_out_scores": {"all": {"F1@0.5": 0.5}}})
    rebuilt = rebuild(path, tmp_path / "again" / "first.pt")
    assert read_model_card(rebuilt) == read_model_card(path)
    assert read_model_card(rebuilt)["postprocessing"]["min_area"] == 5  # the file's, not the defaults
    before = TorchScriptSegmenter(path, device="cpu", cpu_runtime="torch").segment_batch_with_embeddings(fields)
    after = TorchScriptSegmenter(rebuilt, device="cpu", cpu_runtime="torch").segment_batch_with_embeddings(fields)
    assert np.array_equal(before[0], after[0])
    assert all(np.array_equal(a, b) for x, y in zip(before[1], after[1]) for a, b in zip(x.levels, y.levels))
