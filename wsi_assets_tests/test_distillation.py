"""A narrower student cut out of a trained U-Net and taught by it (`training/distill.py`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
from wsi_assets.training.distill import distillation_loss, narrowed, parse_widths, teacher_maps
from wsi_assets.training.network import UNet
from wsi_assets.training.train import TrainConfig, export, initial_widths, load_trained_net, train
from wsi_assets_tests.test_learned_model import labelled_folder

TEACHER_WIDTHS = [6, 8, 12]
STUDENT_WIDTHS = [3, 5, 7]


def teacher_with_idle_channels(seed: int = 0) -> UNet:
    """A random U-Net in which, in every layer, a random set of channels (all but the student's
    count) is exactly zero: batch-norm scale and shift 0, up-convolution weights and bias 0.

    Cutting those channels out must then change nothing; wiring a skip, an up-convolution or the
    head to the wrong channels would."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet(TEACHER_WIDTHS)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.3)
        for teacher_block, width in zip([*net.down, *net.merge], [*STUDENT_WIDTHS, *STUDENT_WIDTHS[::-1][1:]]):
            for batch_norm in (teacher_block.body[1], teacher_block.body[4]):
                idle = rng.choice(batch_norm.num_features, batch_norm.num_features - width, replace=False)
                batch_norm.weight[idle] = 0.0
                batch_norm.bias[idle] = 0.0
        for up, width in zip(net.up, STUDENT_WIDTHS[::-1][1:]):
            idle = rng.choice(up.out_channels, up.out_channels - width, replace=False)
            up.weight[:, idle] = 0.0
            up.bias[idle] = 0.0
    return net.eval()


def test_a_narrowed_net_keeps_the_teachers_working_channels_exactly():
    teacher = teacher_with_idle_channels()
    student = narrowed(teacher, STUDENT_WIDTHS).eval()
    assert student.widths == STUDENT_WIDTHS
    x = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), atol=1e-5)
        # and it is a real cut: a teacher with every channel working answers differently
        busy = UNet(TEACHER_WIDTHS).eval()
        busy.load_state_dict(teacher_with_idle_channels(seed=1).state_dict())
        for module in busy.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.data.fill_(1.0)
                module.bias.data.fill_(0.1)
        assert not torch.allclose(narrowed(busy, STUDENT_WIDTHS).eval()(x), busy(x), atol=1e-3)


def test_bad_widths_get_a_one_line_error():
    teacher = UNet(TEACHER_WIDTHS)
    for widths, words in (([3, 5], "levels"), ([3, 5, 13], "between 1 and"), ([0, 5, 7], "between 1 and")):
        with pytest.raises(ValueError, match=words) as error:
            narrowed(teacher, widths)
        assert "\n" not in str(error.value)
    assert parse_widths("8,16,32,64,96") == [8, 16, 32, 64, 96]
    for text in ("8,sixteen", "", "8,-1"):
        with pytest.raises(ValueError, match="e.g. 8,16,32,64,96"):
            parse_widths(text)


def test_the_distillation_loss_is_lowest_at_the_teachers_own_output():
    teacher = teacher_with_idle_channels()
    x = torch.rand(2, 3, 32, 32)
    maps = teacher_maps(teacher, x)
    with torch.no_grad():
        own = teacher(x)
    # the teacher's distance output clamped to 0..1 is what the model file uses, hence the target
    own = torch.cat([own[:, :1], own[:, 1:2].clamp(0, 1)], dim=1)
    at_teacher = distillation_loss(own, maps)
    for shift in (0.3, -0.3):
        assert distillation_loss(own + shift, maps) > at_teacher
    assert distillation_loss(torch.zeros_like(own), maps) > at_teacher


def test_training_a_student_starts_from_the_teachers_strongest_channels(tmp_path):
    folder = labelled_folder(tmp_path / "labelled")
    teacher_file = export(
        teacher_with_idle_channels(),
        {"name": "teacher", "version": "0", "mpp": 0.5, "widths": TEACHER_WIDTHS},
        tmp_path / "teacher.pt",
    )
    out = tmp_path / "student.pt"
    config = TrainConfig(
        data=folder,
        out=out,
        steps=1,
        batch=2,
        crop=64,
        widths=STUDENT_WIDTHS,
        lr=1e-12,
        tune=False,
        init=teacher_file,
        teacher=teacher_file,
    )
    messages: list[str] = []
    card = train(config, log=messages.append)
    assert card["widths"] == STUDENT_WIDTHS
    assert card["training"]["teacher"] == str(teacher_file) and card["training"]["distill_weight"] == 1.0
    assert any("taught by" in m for m in messages)
    expected = dict(narrowed(load_trained_net(teacher_file), STUDENT_WIDTHS).named_parameters())
    got = dict(load_trained_net(out).named_parameters())
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    # continuing from the student keeps its widths unless told otherwise (the command line's default)
    assert initial_widths(out) == STUDENT_WIDTHS and initial_widths(None) == TrainConfig().widths
    # the student file is a working segmenter of its own widths
    labels = TorchScriptSegmenter(out, device="cpu").segment_batch(np.full((1, 64, 64, 3), 200, np.uint8))
    assert labels.shape[-2:] == (64, 64)
