"""Training for a wall-clock budget, fed by parallel crop workers: the GPU sitting's trainer.

`train.train` counts optimiser steps and samples crops in the training process, which is right
on a 2-core CPU. On a GPU the network step takes milliseconds and the crops (augmentation and
distance targets, numpy/OpenCV) become the bottleneck, and the sitting is bounded by minutes,
not steps. So here:
- crops come from `workers` processes, each with its own seeded `CropSampler`;
- the learning rate follows the fraction of the time budget spent (warm-up, then cosine);
- on CUDA the forward pass runs in bf16 autocast with channels-last activations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from wsi_assets.training.data import CropSampler, at_mpp, image_weights
from wsi_assets.training.distill import distillation_loss, teacher_maps
from wsi_assets.training.network import UNet
from wsi_assets.training.train import loss_fn

WARMUP_FRACTION = 0.05


@dataclass
class TimedTrainResult:
    net: UNet
    steps: int
    seconds: float
    crops_per_s: float
    final_loss: float
    waiting_for_data_s: float  # time the device sat idle waiting for crops


class _CropStream(torch.utils.data.IterableDataset):
    """Endless batches of augmented crops; each worker process draws its own random stream."""

    def __init__(self, images, crop: int, batch: int, seed: int, stain_jitter: float, scale_jitter: float, weights: np.ndarray):
        self.images, self.crop, self.batch, self.seed = images, crop, batch, seed
        self.stain_jitter, self.scale_jitter, self.weights = stain_jitter, scale_jitter, weights

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        sampler = CropSampler(
            self.images, self.crop, self.seed * 1000 + worker, self.stain_jitter, self.scale_jitter, self.weights
        )
        while True:
            yield sampler.sample(self.batch)


def lr_at(fraction: float, peak: float) -> float:
    """Linear warm-up over the first WARMUP_FRACTION of the budget, then cosine to 1% of the peak."""
    if fraction < WARMUP_FRACTION:
        return peak * max(fraction / WARMUP_FRACTION, 0.01)
    progress = min(1.0, (fraction - WARMUP_FRACTION) / (1 - WARMUP_FRACTION))
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_for(
    net: UNet,
    items: list,
    mpp: float,
    seconds: float,
    device: torch.device,
    batch: int,
    crop: int,
    lr: float,
    workers: int,
    seed: int,
    stain_jitter: float,
    scale_jitter: float,
    max_steps: int = 0,
    log: Callable[[str], None] = print,
    dataset_shares: dict[str, float] | None = None,
    teacher: UNet | None = None,
    distill_weight: float = 1.0,
) -> TimedTrainResult:
    """Train `net` in place for `seconds` of wall-clock time (or `max_steps`, whichever comes first);
    with a `teacher`, also towards its maps (`distill.distillation_loss`)."""
    torch.manual_seed(seed)
    images = [at_mpp(item, mpp) for item in items]
    weights = image_weights(items, images, dataset_shares or {})
    stream = _CropStream(images, crop, batch, seed, stain_jitter, scale_jitter, weights)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    on_cuda = device.type == "cuda"
    net = net.to(device)
    if on_cuda:
        net = net.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher = teacher.to(device).eval()
        if on_cuda:
            teacher = teacher.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()
    started = time.perf_counter()
    waiting = 0.0
    running = float("nan")
    step = 0
    batches = iter(loader)
    next_log = started + 15
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or (max_steps and step >= max_steps):
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(elapsed / seconds, lr)
        fetch_start = time.perf_counter()
        x, fg, dist = (torch.as_tensor(a).to(device, non_blocking=True) for a in next(batches))
        waiting += time.perf_counter() - fetch_start
        if on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
            out = net(x / 255.0)
            maps = teacher_maps(teacher, x / 255.0) if teacher is not None else None
        loss = loss_fn(out.float(), fg, dist)
        if maps is not None:
            loss = loss + distill_weight * distillation_loss(out.float(), maps.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = loss.item()
        running = value if step == 1 else 0.98 * running + 0.02 * value
        if time.perf_counter() >= next_log:
            now = time.perf_counter() - started
            log(
                f"step {step} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"({now:.0f}/{seconds:.0f} s, {step * batch / now:.0f} crops/s, waited for data {waiting:.0f} s)"
            )
            next_log += 15
    total = time.perf_counter() - started
    del batches, loader
    net = net.to(memory_format=torch.contiguous_format).cpu().eval()
    log(
        f"trained {step} steps of {batch}×{crop}² crops in {total:.0f} s "
        f"({step * batch / max(total, 1e-9):.0f} crops/s; waited for data {waiting:.0f} s); loss {running:.4f}"
    )
    return TimedTrainResult(net, step, total, step * batch / max(total, 1e-9), running, waiting)
