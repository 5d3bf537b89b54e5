"""Fine-tune an exported nucleus model on reviewed tiles mixed with a sample of its base training data.

Half of every batch comes from the reviews and half from the base data, so the model learns the
lab's corrections without forgetting what it knew. Reuses the training loop's pieces (loss,
crops and augmentation, export with the ONNX copy for the CPU runtimes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi_assets.core.progress import EverySeconds
from wsi_assets.finetuning.review_tiles import ReviewedTile
from wsi_assets.segmentation.model_files import read_model_card
from wsi_assets.training import split
from wsi_assets.training.data import (
    CropSampler,
    at_mpp,
    list_labelled_folder,
    load_images,
)

BASE_IMAGES = 12  # base training images mixed in: enough variety to hold on to, cheap to load


@dataclass
class FineTuneSettings:
    steps: int = 150
    batch: int = 8
    crop: int = 128
    lr: float = 5e-4
    seed: int = 0
    threads: int = 1
    stain_jitter: float = 0.1
    scale_jitter: float = 1.1


def base_sample(folder: Path | None, mpp: float, count: int = BASE_IMAGES, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to `count` training (never held-out) images of the base set at `mpp`; [] when the folder is absent."""
    if folder is None or not Path(folder).is_dir() or count <= 0:
        return []
    table = list_labelled_folder(folder)
    held = np.array([split.is_held_out(d, s) for d, s in zip(table["dataset"], table["stem"])], bool)
    table = table[~held]
    if table.empty:
        return []
    table = table.sample(n=min(count, len(table)), random_state=seed)
    return [at_mpp(item, mpp) for item in load_images(folder, table)]


def fine_tune_nuclei(
    base_model: Path,
    tiles: list[ReviewedTile],
    base_images: list[tuple[np.ndarray, np.ndarray]],
    out: Path,
    card_updates: dict,
    settings: FineTuneSettings | None = None,
    log: Callable[[str], None] = print,
    every_s: float = 30.0,
) -> dict:
    """Continue training `base_model` and export the result to `out`; returns its model card.

    `log` hears the first step (its time gives the ETA), then a step every `every_s` seconds and the last.

    The post-processing thresholds are the base model's: they were tuned on far more images than
    a review holds.
    """
    # torch is imported by the run that fine-tunes, not by every process that loads the definitions.
    import torch

    from wsi_assets.training.train import export, load_trained_net, loss_fn

    settings = settings or FineTuneSettings()
    torch.manual_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    card = read_model_card(base_model)
    net = load_trained_net(base_model, card)
    reviews = CropSampler(
        [(t.rgb, t.labels) for t in tiles], settings.crop, settings.seed, settings.stain_jitter, settings.scale_jitter
    )
    base = (
        CropSampler(base_images, settings.crop, settings.seed + 1, settings.stain_jitter, settings.scale_jitter)
        if base_images
        else None
    )
    from_reviews = settings.batch // 2 if base else settings.batch
    start = time.perf_counter()
    progress = EverySeconds(log, "fine-tuning step", "steps", every_s)
    if settings.steps > 0:
        opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps, pct_start=0.1)
        net.train()
        for step in range(1, settings.steps + 1):
            parts = [reviews.sample(from_reviews)] + ([base.sample(settings.batch - from_reviews)] if base else [])
            x, fg, dist = (torch.from_numpy(np.concatenate(arrays)) for arrays in zip(*parts))
            loss = loss_fn(net(x / 255.0), fg, dist)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress(step, settings.steps, f"loss {loss.item():.4f}")
    seconds = time.perf_counter() - start
    post = card.get("postprocessing", {})
    new_card = {k: v for k, v in card.items() if k not in ("postprocessing", "cpu_runtimes")}
    new_card["fine_tuning"] = {
        "base_model": {"name": card.get("name"), "version": card.get("version"), "file": Path(base_model).name},
        "reviewed_tiles": len(tiles),
        "reviewed_cells": int(sum(t.cells for t in tiles)),
        "base_images": len(base_images),
        "steps": settings.steps,
        "batch": settings.batch,
        "crop": settings.crop,
        "lr": settings.lr,
        "seed": settings.seed,
        "threads": settings.threads,
        "seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    new_card.update(card_updates)
    thresholds = {k: post[k] for k in ("fg_threshold", "seed_threshold", "grow_iterations", "min_area") if k in post}
    export(net.cpu().eval(), new_card, out, **thresholds)
    return new_card
