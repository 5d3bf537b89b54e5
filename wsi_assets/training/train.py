"""Train the nucleus model from a labelled folder and export it as TorchScript with a model card.

    python -m wsi_assets.cli.train_nuclei --out wsi_assets/models/nuclei_unet.pt \
        [--data DIR] [--commercial-only] [--epochs N | --steps N] [--device auto] [--threads 1]

Everything is seeded; on CPU with one thread two runs give the same weights.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from wsi_assets.segmentation.torchscript import CARD_SUFFIX, resolve_device
from wsi_assets.training import defaults, split
from wsi_assets.training.data import (
    CropSampler,
    allows_commercial_use,
    at_mpp,
    image_weights,
    list_labelled_folder,
    load_images,
)
from wsi_assets.training.distill import distillation_loss, narrowed, teacher_maps
from wsi_assets.training.model_file import STANDARD_WIDTHS, load_trained_net
from wsi_assets.training.network import NucleiModel, UNet
from wsi_assets.training.onnx_export import card_embedding, has_embedding_levels

MODEL_NAME = "wsi-nuclei-unet"


@dataclass
class TrainConfig:
    data: Path = field(default_factory=defaults.default_training_data)
    out: Path = field(default_factory=lambda: defaults.resolve_model_path(None))
    commercial_only: bool = False
    epochs: float = 0.0  # passes over the training pixels; 0 = use `steps`
    steps: int = defaults.STEPS
    batch: int = defaults.BATCH
    crop: int = defaults.CROP
    lr: float = 2e-3
    mpp: float = defaults.MODEL_MPP
    widths: list[int] = field(default_factory=lambda: list(STANDARD_WIDTHS))
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    version: str = ""
    tune: bool = True  # choose the post-processing thresholds on the training images
    snapshot_every: int = 0  # also export `<out>.step<N>.pt` every N steps (0 = never)
    init: Path | None = None  # start from this exported model's weights (continue or fine-tune)
    stain_jitter: float = defaults.STAIN_JITTER  # colour augmentation strength (see CropSampler)
    scale_jitter: float = defaults.SCALE_JITTER  # crops zoomed by up to this factor either way
    dataset_shares: dict[str, float] = field(default_factory=dict)  # fixed crop fractions; the rest by area
    # Distillation: a model file whose maps the network is also taught to match (see distill.py);
    # with `init` of other widths, the network starts as that model's strongest channels.
    teacher: Path | None = None
    distill_weight: float = 1.0


def loss_fn(out: torch.Tensor, fg: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    logit, dist_pred = out[:, :1], out[:, 1:2]
    bce = F.binary_cross_entropy_with_logits(logit, fg)
    prob = torch.sigmoid(logit)
    dice = 1 - (2 * (prob * fg).sum() + 1) / (prob.sum() + fg.sum() + 1)
    weight = 1.0 + 2.0 * fg  # the distance inside nuclei is what separates them
    mse = (weight * (dist_pred - dist) ** 2).mean()
    return bce + dice + 2.0 * mse


def training_images(config: TrainConfig, log: Callable[[str], None]):
    table = list_labelled_folder(config.data)
    held = [split.is_held_out(d, s) for d, s in zip(table["dataset"], table["stem"])]
    table = table[~np.array(held)]
    if config.commercial_only:
        table = table[table["commercial_use_ok"].map(allows_commercial_use).astype(bool)]
    if table.empty:
        raise ValueError(f"no training images left in {config.data} (commercial_only={config.commercial_only})")
    items = load_images(config.data, table)
    log(f"training on {len(items)} images, {sum(int(i.labels.max()) for i in items)} nuclei, at {config.mpp} µm/px")
    return table, items


FG_THRESHOLDS = (0.4, 0.5, 0.6)
SEED_THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
MIN_AREAS = (8, 16)  # pixels at the model's µm/px


def tune_postprocessing(
    net: UNet,
    items: list,
    mpp: float,
    log: Callable[[str], None] = print,
    device: torch.device | None = None,
    max_per_dataset: int = 0,
) -> dict:
    """Foreground and seed thresholds and minimum area that score best (mean of F1@0.5, AJI, PQ) on training images.

    Only training images are used (at their native resolution, as `segment_image` scores them),
    so the held-out figures stay untouched by this choice. `max_per_dataset` (0 = all) bounds
    the work where time is short (the GPU sitting): the first N images of each dataset.
    """
    from wsi_assets.segmentation.image import resize_labels
    from wsi_assets.segmentation.metrics import aggregated_jaccard_index, f1_at_iou, panoptic_quality
    from wsi_assets.training.postprocess import instances_from_maps

    device = device or torch.device("cpu")
    if max_per_dataset:
        kept, counts = [], Counter()
        for item in items:
            if counts[item.dataset] < max_per_dataset:
                counts[item.dataset] += 1
                kept.append(item)
        items = kept
    model = NucleiModel(net.to(device).eval())
    totals: dict[tuple[float, float, int], dict[str, list[float]]] = {}
    with torch.inference_mode():
        for item in items:
            rgb, _ = at_mpp(item, mpp)
            maps = model.maps(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().to(device))
            for fg_t, seed_t, min_area in itertools.product(FG_THRESHOLDS, SEED_THRESHOLDS, MIN_AREAS):
                labels = instances_from_maps(maps[:, :1], maps[:, 1:2], fg_t, seed_t, 24, min_area)[0, 0].cpu().numpy()
                if labels.shape != item.labels.shape:
                    labels = resize_labels(labels, item.labels.shape)
                score = (
                    f1_at_iou(labels, item.labels)["f1"]
                    + aggregated_jaccard_index(labels, item.labels)
                    + panoptic_quality(labels, item.labels)["pq"]
                ) / 3
                totals.setdefault((fg_t, seed_t, min_area), {}).setdefault(item.dataset, []).append(score)
    # each dataset counts equally, however many tiles it has
    means = {key: float(np.mean([np.mean(v) for v in per_set.values()])) for key, per_set in totals.items()}
    (fg_t, seed_t, min_area), best = max(means.items(), key=lambda kv: kv[1])
    log(
        f"post-processing on {len(items)} training images: fg_threshold {fg_t}, seed_threshold {seed_t}, "
        f"min_area {min_area} (mean of F1, AJI, PQ {best:.3f}; at 0.5/0.5/8: {means[(0.5, 0.5, 8)]:.3f})"
    )
    return {"fg_threshold": fg_t, "seed_threshold": seed_t, "min_area": min_area}


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train, export TorchScript + model card to `config.out`; returns the card."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    table, items = training_images(config, log)
    images = [at_mpp(item, config.mpp) for item in items]
    pixels = sum(rgb.shape[0] * rgb.shape[1] for rgb, _ in images)
    steps = config.steps
    if config.epochs:
        steps = max(1, math.ceil(config.epochs * pixels / (config.batch * config.crop**2)))
    weights = image_weights(items, images, config.dataset_shares)
    sampler = CropSampler(images, config.crop, config.seed, config.stain_jitter, config.scale_jitter, weights)
    drawn = Counter()
    for item, weight in zip(items, weights):
        drawn[item.dataset] += weight
    log("crops drawn per dataset: " + ", ".join(f"{name} {share:.1%}" for name, share in sorted(drawn.items())))
    net = UNet(list(config.widths))
    if config.init:
        start_net = load_trained_net(Path(config.init))
        if list(start_net.widths) == list(config.widths):
            net.load_state_dict(start_net.state_dict())
            log(f"starting from the weights of {config.init}")
        else:
            net = narrowed(start_net, list(config.widths))
            log(f"starting from the strongest channels of {config.init} (widths {start_net.widths} -> {list(config.widths)})")
    net = net.to(device)
    teacher = None
    if config.teacher:
        teacher = load_trained_net(Path(config.teacher)).to(device).eval()
        log(f"taught by {config.teacher} (widths {teacher.widths}), distillation weight {config.distill_weight}")
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    log(
        f"{steps} steps of {config.batch}×{config.crop}² crops on {device} ({sum(p.numel() for p in net.parameters()):,} parameters)"
    )
    start = time.perf_counter()
    running = 0.0
    net.train()
    for step in range(1, steps + 1):
        x, fg, dist = (torch.from_numpy(a).to(device) for a in sampler.sample(config.batch))
        out = net(x / 255.0)
        loss = loss_fn(out, fg, dist)
        if teacher is not None:
            loss = loss + config.distill_weight * distillation_loss(out, teacher_maps(teacher, x / 255.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0 or step == steps:
            elapsed = time.perf_counter() - start
            log(f"step {step}/{steps} loss {running:.4f} ({elapsed:.0f} s, {elapsed / step:.2f} s/step)")
        if config.snapshot_every and step % config.snapshot_every == 0 and step < steps:
            snapshot = Path(config.out).with_name(f"{Path(config.out).stem}.step{step}.pt")
            export(copy.deepcopy(net).cpu().eval(), {"name": MODEL_NAME, "version": f"step{step}", "mpp": config.mpp}, snapshot)
            net.train()
    seconds = time.perf_counter() - start
    post = tune_postprocessing(net, items, config.mpp, log) if config.tune else {}
    card = {
        "name": MODEL_NAME + ("-cc0" if config.commercial_only else ""),
        "version": config.version or datetime.now(timezone.utc).strftime("%Y%m%d%H%M"),
        "mpp": config.mpp,
        "input": {
            "layout": "RGB float32 (B,3,H,W), any H,W",
            "range": "0..255",
            "resolution_um_per_px": config.mpp,
        },
        "output": "int32 instance labels (B,1,H,W), 0 = background, 1..n per image; post-processing inside",
        "architecture": f"U-Net widths {list(config.widths)}, foreground + normalised distance heads; "
        "pure-torch seeds + geodesic dilation post-processing",
        "widths": list(config.widths),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "data": str(config.data),
            "images": len(table),
            "datasets": table.groupby("dataset").size().to_dict(),
            "licences": sorted(table["licence"].astype(str).unique().tolist()),
            "commercial_use_ok": bool(table["commercial_use_ok"].map(allows_commercial_use).all()),
            "commercial_only_switch": config.commercial_only,
            "steps": steps,
            "batch": config.batch,
            "crop": config.crop,
            "lr": config.lr,
            "stain_jitter": config.stain_jitter,
            "scale_jitter": config.scale_jitter,
            "dataset_shares": {name: round(float(share), 4) for name, share in sorted(drawn.items())},
            "seed": config.seed,
            "init": str(config.init) if config.init else None,
            "teacher": str(config.teacher) if config.teacher else None,
            "distill_weight": config.distill_weight if config.teacher else None,
            "device": str(device),
            "threads": config.threads,
            "seconds": round(seconds, 1),
            "torch": torch.__version__,
        },
        "held_out_split": split.describe(),
        "licence_note": "Weights trained on MoNuSeg (CC BY-NC-SA 4.0) are not for commercial use; "
        "train with --commercial-only for a model from the CC0 sets alone.",
    }
    export(net.cpu().eval(), card, config.out, **post)
    log(f"wrote {config.out} ({Path(config.out).stat().st_size / 1e6:.1f} MB) after {seconds:.0f} s")
    return card


def export(net: UNet, card: dict, out: Path, **post) -> Path:
    """Script the network + post-processing, embed the card, write the card beside the file too."""
    model = torch.jit.script(NucleiModel(net, **post).eval())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    card = {
        **card,
        "postprocessing": {
            "fg_threshold": model.fg_threshold,
            "seed_threshold": model.seed_threshold,
            "grow_iterations": model.grow_iterations,
            "min_area": model.min_area,
        },
    }
    if has_embedding_levels(net):  # the module's labels_and_embedding_maps, and network.onnx's extra outputs
        card["embedding"] = card_embedding(net)
    extra = {}
    try:  # the CPU runtimes' copy of the network; a machine without onnx still gets a working file
        from wsi_assets.training.onnx_export import ONNX_NAME, OPSET, network_onnx

        extra[ONNX_NAME] = network_onnx(net)
        card["cpu_runtimes"] = {"network": ONNX_NAME, "opset": OPSET}
    except Exception as error:
        print(
            f"note: network.onnx not embedded ({type(error).__name__}: {error}); add it later with python -m wsi_assets.cli.export_onnx {out}"
        )
    text = json.dumps(card, indent=2, default=str)
    temporary = out.with_name(out.name + ".tmp")
    torch.jit.save(model, str(temporary), _extra_files={"model_card.json": text, **extra})
    temporary.replace(out)
    card_path = out.with_name(out.stem + CARD_SUFFIX)
    card_path.write_text(text)
    return out


def rebuild(model_file: Path, out: Path, card_updates: dict | None = None, **post) -> Path:
    """Re-export a trained file with this code's module and network.onnx, no retraining: the same
    weights, the post-processing settings given in `post` and the file's own for the others, and
    the card's keys where they were (so the card's diff shows only what changed)."""
    from wsi_assets.segmentation.torchscript import read_model_card

    card = read_model_card(model_file)
    net = load_trained_net(model_file, card)
    post = {**(card.get("postprocessing") or {}), **post}
    return export(net.eval(), {**card, **(card_updates or {})}, out, **post)


def initial_widths(init: Path | None) -> list[int]:
    """The widths of the model training continues from (so a student continues as one), else the standard."""
    from wsi_assets.segmentation.torchscript import read_model_card

    widths = (read_model_card(init).get("widths") if init else None) or TrainConfig().widths
    return [int(w) for w in widths]
