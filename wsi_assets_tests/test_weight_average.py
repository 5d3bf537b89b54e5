"""Mixing a start model with fine-tuned copies of it (how version 4 was made): the arithmetic, the card, the refusals."""

import pytest
import torch

from wsi_assets.segmentation.torchscript import read_model_card
from wsi_assets.training.network import UNet
from wsi_assets.cli.average_weights import main
from wsi_assets.training.train import export, load_trained_net
from wsi_assets.training.weight_average import averaged_net, write_average


def _model(path, widths, seed, fg=0.5, version="1"):
    torch.manual_seed(seed)
    card = {"name": "tiny", "version": version, "mpp": 0.5, "widths": widths, "training": {"steps": 10, "lr": 1e-3, "seed": seed}}
    return export(UNet(widths).eval(), card, path, fg_threshold=fg)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("average")
    return (
        _model(folder / "start.pt", [4, 8], 0, version="3"),
        _model(folder / "a.pt", [4, 8], 1, fg=0.4),
        _model(folder / "b.pt", [4, 8], 2),
        _model(folder / "wide.pt", [8, 16], 3),
    )


def test_each_weight_moves_alpha_of_the_way_to_the_fine_tuned_mean(models):
    start, a, b, _ = models
    s, wa, wb = (load_trained_net(p).state_dict() for p in (start, a, b))
    mixed = averaged_net(start, [a, b], 0.35).state_dict()
    name = next(k for k, v in s.items() if v.is_floating_point() and v.abs().sum() > 0)
    torch.testing.assert_close(mixed[name], 0.65 * s[name] + 0.35 * (wa[name] + wb[name]) / 2)
    torch.testing.assert_close(averaged_net(start, [a], 0.0).state_dict()[name], s[name])
    torch.testing.assert_close(averaged_net(start, [a], 1.0).state_dict()[name], wa[name])


def test_the_card_records_the_mix_and_the_first_fine_tuned_post_processing(models, tmp_path):
    start, a, b, _ = models
    card = write_average(start, [a, b], 0.35, tmp_path / "v4.pt", "4")
    written = read_model_card(tmp_path / "v4.pt")
    assert written["version"] == card["version"] == "4"
    assert written["weight_average"]["alpha"] == 0.35 and written["weight_average"]["finetuned"] == ["a.pt", "b.pt"]
    assert written["postprocessing"]["fg_threshold"] == pytest.approx(0.4)
    assert written["training"]["history"][-1]["version"] == "3"


def test_models_of_other_widths_or_a_bad_alpha_are_refused_in_one_line(models, tmp_path, capsys):
    start, a, _, wide = models
    with pytest.raises(ValueError, match="only copies of one network can be averaged"):
        averaged_net(start, [wide], 0.5)
    with pytest.raises(ValueError, match="not between 0"):
        averaged_net(start, [a], 1.5)
    with pytest.raises(SystemExit) as stopped:
        main(["--start", str(start), "--finetuned", str(wide), "--alpha", "0.5", "--out", str(tmp_path / "x.pt")])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: wide.pt has widths") and "\n" not in message
    assert not (tmp_path / "x.pt").exists()
