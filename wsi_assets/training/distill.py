"""A narrower U-Net taught by the shipped one: the route to a CPU-fast default (issue 12).

On a 2-core AVX2 CPU the network is ~80% of a slide's run, and halving every width cuts its cost
~3.5× (OpenVINO, one 1152² tile: 1.77 → 0.51 CPU-s). A half-width net trained from scratch loses
accuracy; one cut out of the trained net and then taught by it starts close and learns fast:
- `narrowed` keeps, level by level, the channels whose batch-norm scale is largest (the ones the
  trained net leans on) and wires the skips, up-convolutions and head to the same channels;
- `distillation_loss` asks the student for the teacher's maps (foreground probability and
  distance), a denser target than the labels alone, added to the usual loss on the labels.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

from wsi_assets.training.network import ConvBlock, UNet, activated_maps


def _strongest(batch_norm: torch.nn.BatchNorm2d, count: int) -> torch.Tensor:
    """The `count` channels with the largest |scale|, in their original order."""
    order = torch.argsort(batch_norm.weight.detach().abs(), descending=True)[:count]
    return torch.sort(order).values


def _copy_batch_norm(src: torch.nn.BatchNorm2d, dst: torch.nn.BatchNorm2d, keep: torch.Tensor) -> None:
    dst.weight.copy_(src.weight[keep])
    dst.bias.copy_(src.bias[keep])
    dst.running_mean.copy_(src.running_mean[keep])
    dst.running_var.copy_(src.running_var[keep])


def _narrow_block(src: ConvBlock, dst: ConvBlock, inputs: torch.Tensor) -> torch.Tensor:
    """Copy the kept channels of `src` into `dst`, reading `inputs` of src's input; returns the kept outputs."""
    conv1, bn1, conv2, bn2 = src.body[0], src.body[1], src.body[3], src.body[4]
    inner = _strongest(bn1, dst.body[0].out_channels)
    outer = _strongest(bn2, dst.body[3].out_channels)
    dst.body[0].weight.copy_(conv1.weight[inner][:, inputs])
    _copy_batch_norm(bn1, dst.body[1], inner)
    dst.body[3].weight.copy_(conv2.weight[outer][:, inner])
    _copy_batch_norm(bn2, dst.body[4], outer)
    return outer


@torch.no_grad()
def narrowed(net: UNet, widths: List[int]) -> UNet:
    """A U-Net of `widths` (as many levels as `net`, none wider) holding `net`'s strongest channels."""
    widths = [int(w) for w in widths]
    if len(widths) != len(net.widths):
        raise ValueError(f"widths {widths} have {len(widths)} levels; the teacher has {len(net.widths)} ({net.widths})")
    if any(w < 1 or w > t for w, t in zip(widths, net.widths)):
        raise ValueError(f"widths {widths} must each be between 1 and the teacher's {net.widths}")
    student = UNet(widths, out_channels=net.head.out_channels)
    kept = torch.arange(3)
    level_outputs = []
    for src, dst in zip(net.down, student.down):
        kept = _narrow_block(src, dst, kept)
        level_outputs.append(kept)
    skips = level_outputs[:-1]
    for j, (up_src, up_dst, merge_src, merge_dst) in enumerate(zip(net.up, student.up, net.merge, student.merge)):
        # ConvTranspose2d weights are (in, out, kh, kw): keep the outputs the kept inputs drive hardest
        weight = up_src.weight[kept]
        up_kept = torch.sort(torch.argsort(weight.abs().sum(dim=(0, 2, 3)), descending=True)[: up_dst.out_channels]).values
        up_dst.weight.copy_(weight[:, up_kept])
        up_dst.bias.copy_(up_src.bias[up_kept])
        skip = skips[len(skips) - 1 - j]
        inputs = torch.cat([up_kept, up_src.out_channels + skip])  # forward concatenates [upsampled, skip]
        kept = _narrow_block(merge_src, merge_dst, inputs)
    student.head.weight.copy_(net.head.weight[:, kept])
    student.head.bias.copy_(net.head.bias)
    return student


def teacher_maps(teacher: UNet, x: torch.Tensor) -> torch.Tensor:
    """The teacher's foreground probability and distance (clamped to 0..1, as the model file uses
    them) for normalised input `x`."""
    with torch.no_grad():
        return activated_maps(teacher(x).float())


def distillation_loss(out: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """How far the student's output is from the teacher's maps: soft cross-entropy on the
    foreground, squared error on the distance weighted to the nuclei (as `train.loss_fn` does)."""
    prob, dist = maps[:, :1], maps[:, 1:2]
    bce = F.binary_cross_entropy_with_logits(out[:, :1], prob)
    mse = ((1.0 + 2.0 * prob) * (out[:, 1:2] - dist) ** 2).mean()
    return bce + 2.0 * mse


def parse_widths(text: str) -> list[int]:
    """'8,16,32,64,96' -> [8, 16, 32, 64, 96], with a one-line error for anything else."""
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"widths {text!r}: give whole numbers separated by commas, e.g. 8,16,32,64,96") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"widths {text!r}: give positive whole numbers separated by commas, e.g. 8,16,32,64,96")
    return widths
