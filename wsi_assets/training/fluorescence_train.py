"""Train the fluorescence nucleus model, resumably, and export it as TorchScript with a model card.

    python -m wsi_assets.cli.train_fluorescence --checkpoints DIR --hours H [--out MODEL.pt]
    python -m wsi_assets.cli.train_fluorescence --checkpoints DIR --export-only --out MODEL.pt

Training stops after `--hours` of training time in all (counted across restarts) or `--steps`.
Every `--checkpoint-minutes` the network, optimiser, step, random states and log are saved in
DIR (`checkpoints.py`); a restart with the same DIR goes on from the newest. Every
`--validate-minutes` the held-out experiments are scored (F1@0.5, AJI, PQ, each image zoomed so
its median true nucleus is the reference size) and the best network so far is kept as
DIR/best_net.pt. Each event is a JSON line in DIR/log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from wsi_assets.segmentation.model_files import CARD_NAME, CARD_SUFFIX
from wsi_assets.training import checkpoints
from wsi_assets.training.fluorescence_data import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    REFERENCE_DIAMETER_PX,
    SCALE_RANGE,
    FluoCropSampler,
    FluoImage,
    describe_split,
    load_fluorescence_images,
)
from wsi_assets.training.fluorescence_eval import model_segmenter, score_images, summary, tune_postprocessing
from wsi_assets.training.fluorescence_model import FluorescenceNucleiModel
from wsi_assets.training.network import UNet
from wsi_assets.training.onnx_export import card_embedding, has_embedding_levels
from wsi_assets.training.train import loss_fn

MODEL_NAME = "wsi-nuclei-fluo-unet"
WIDTHS = [16, 32, 64, 96, 128]
# Nucleus diameter the model's µm/px is stated for (a typical mammalian nucleus is ~6-12 µm); with
# the reference diameter of 16 px that makes 0.5 µm/px, as the H&E model. Callers that know the pixel
# size rescale by it; callers that do not rescale by the estimated nucleus size.
REFERENCE_DIAMETER_UM = 8.0
WARMUP = 0.03


def lr_at(progress: float, peak: float) -> float:
    """Linear warm-up, then cosine down to 5% of the peak at progress 1."""
    if progress < WARMUP:
        return peak * max(progress / WARMUP, 0.02)
    done = min(1.0, (progress - WARMUP) / (1 - WARMUP))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done)))


def validate(net: UNet, items: list[FluoImage], reference_diameter: float = REFERENCE_DIAMETER_PX) -> dict:
    """Pooled F1@0.5, mean AJI and PQ over `items`, each zoomed by its true median nucleus size."""
    was_training = net.training
    model = FluorescenceNucleiModel(net.eval(), LOW_PERCENTILE / 100, HIGH_PERCENTILE / 100)
    scores = summary(score_images(model_segmenter(model, reference_diameter, "true"), items))
    net.train(was_training)
    return {k: scores[k] for k in ("f1", "aji", "pq", "images")}


def _append_log(folder: Path, entry: dict) -> None:
    with open(Path(folder) / "log.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def train(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """Train (or go on training) into `args.checkpoints`; returns the last state saved."""
    torch.set_num_threads(args.threads)
    folder = Path(args.checkpoints)
    folder.mkdir(parents=True, exist_ok=True)
    state = checkpoints.load_latest(folder)
    train_items = load_fluorescence_images(args.data, held_out=False, limit=args.limit, split_file=args.split)
    val_items = load_fluorescence_images(args.data, held_out=True, limit=args.val_limit or args.limit, split_file=args.split)
    sampler = FluoCropSampler(train_items, args.crop, args.seed, args.reference_diameter, tuple(args.scale_range))
    torch.manual_seed(args.seed)
    widths = list(state["config"]["widths"]) if state else list(args.widths)
    net = UNet(widths)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step, seconds, best, history = 0, 0.0, -1.0, []
    if state:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        sampler.state = state["sampler"]
        torch.set_rng_state(state["torch_rng"])
        step, seconds, best, history = state["step"], state["seconds"], state["best"], state["log"]
        log(f"resumed from step {step} ({seconds / 3600:.2f} h trained)")
    else:
        log(
            f"fresh start: {len(train_items)} training images, {len(val_items)} held out, widths {widths}, "
            f"{sum(p.numel() for p in net.parameters()):,} parameters"
        )
    config = {
        "widths": widths,
        "batch": args.batch,
        "crop": args.crop,
        "lr": args.lr,
        "seed": args.seed,
        "reference_diameter": args.reference_diameter,
        "scale_range": list(args.scale_range),
        "hours": args.hours,
        "steps": args.steps,
        "threads": args.threads,
    }
    budget = args.hours * 3600 if args.hours else 0.0

    def save() -> dict:
        snapshot = {
            "net": net.state_dict(),
            "optimizer": opt.state_dict(),
            "sampler": sampler.state,
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "seconds": seconds,
            "best": best,
            "log": history,
            "config": config,
        }
        checkpoints.save_checkpoint(folder, step, snapshot)
        return snapshot

    def event(entry: dict) -> None:
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "step": step,
            "hours": round(seconds / 3600, 4),
            **entry,
        }
        history.append(entry)
        _append_log(folder, entry)

    def finished() -> bool:
        return bool(
            (args.steps and step >= args.steps)
            or (budget and seconds >= budget)
            or (args.stop_at_step and step >= args.stop_at_step)
        )

    net.train()
    last_save = last_val = time.monotonic()
    running = float("nan")
    saved = state
    while not finished():
        started = time.perf_counter()
        progress = max(seconds / budget if budget else 0.0, step / args.steps if args.steps else 0.0)
        for group in opt.param_groups:
            group["lr"] = lr_at(progress, args.lr)
        x, fg, dist = (torch.from_numpy(a) for a in sampler.sample(args.batch))
        loss = loss_fn(net(x), fg, dist)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seconds += time.perf_counter() - started
        running = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
        if step % args.log_every == 0:
            event({"loss": round(running, 5), "lr": opt.param_groups[0]["lr"]})
            log(f"step {step} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} ({seconds / step:.2f} s/step)")
        now = time.monotonic()
        if args.validate_minutes and (now - last_val >= 60 * args.validate_minutes or finished()):
            scores = validate(net, val_items, args.reference_diameter)
            score = (scores["f1"] + scores["aji"] + scores["pq"]) / 3
            if score > best:
                best = score
                torch.save(
                    {"net": net.state_dict(), "widths": widths, "step": step, "scores": scores, "hours": seconds / 3600},
                    folder / "best_net.pt",
                )
            event(
                {"validation": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}, "best": round(best, 4)}
            )
            log(
                f"step {step} held-out F1 {scores['f1']:.3f} AJI {scores['aji']:.3f} PQ {scores['pq']:.3f} (best mean {best:.3f})"
            )
            last_val = time.monotonic()
        if now - last_save >= 60 * args.checkpoint_minutes or finished():
            saved = save()
            last_save = time.monotonic()
    if saved is None or saved["step"] != step:
        saved = save()
    log(f"stopped at step {step} after {seconds / 3600:.2f} h of training")
    return saved


def export(net: UNet, out: Path, card: dict, post: dict | None = None) -> Path:
    """Script the fluorescence module, embed the card, write the card beside the file too.

    No network.onnx rides along: the CPU runtimes run the bare U-Net on 0..255 input, which
    would skip this model's normalisation; the TorchScript module is the model here."""
    module = FluorescenceNucleiModel(net.cpu().eval(), LOW_PERCENTILE / 100, HIGH_PERCENTILE / 100, **(post or {}))
    scripted = torch.jit.script(module.eval())
    card = {
        **card,
        "postprocessing": {
            "fg_threshold": module.fg_threshold,
            "seed_threshold": module.seed_threshold,
            "grow_iterations": module.grow_iterations,
            "min_area": module.min_area,
        },
    }
    if has_embedding_levels(net):
        card["embedding"] = card_embedding(net)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card, indent=2, default=str)
    temporary = out.with_name(out.name + ".tmp")
    torch.jit.save(scripted, str(temporary), _extra_files={CARD_NAME: text})
    temporary.replace(out)
    out.with_name(out.stem + CARD_SUFFIX).write_text(text)
    return out


def update_card(model_file: Path, updates: dict) -> Path:
    """Rewrite a model file's card (embedded and sidecar) with `updates`, the weights untouched."""
    from wsi_assets.segmentation.model_files import read_model_card

    model_file = Path(model_file)
    card = {**read_model_card(model_file), **updates}
    text = json.dumps(card, indent=2, default=str)
    module = torch.jit.load(str(model_file), map_location="cpu")
    temporary = model_file.with_name(model_file.name + ".tmp")
    torch.jit.save(module, str(temporary), _extra_files={CARD_NAME: text})
    temporary.replace(model_file)
    model_file.with_name(model_file.stem + CARD_SUFFIX).write_text(text)
    return model_file


def model_card(widths: list[int], config: dict, step: int, hours: float, scores: dict | None, version: str) -> dict:
    mpp = REFERENCE_DIAMETER_UM / config.get("reference_diameter", REFERENCE_DIAMETER_PX)
    return {
        "name": MODEL_NAME,
        "version": version,
        "modality": "fluorescence",
        "mpp": mpp,
        "input": {
            "layout": "float32 (B,3,H,W), any H,W: the nuclear channel replicated to 3 channels (RGB is averaged)",
            "range": "0..255",
            "range_note": "any scale works: the module normalises each image itself",
            "resolution_um_per_px": mpp,
            "normalisation": {
                "where": "inside the TorchScript module",
                "rule": f"per image, mean over channels, then the {LOW_PERCENTILE} and {HIGH_PERCENTILE} percentiles "
                "(nearest rank, from at most 2**20 evenly strided pixels) map to 0 and 1, clamped to -1..2",
                "low_percentile": LOW_PERCENTILE,
                "high_percentile": HIGH_PERCENTILE,
            },
        },
        "nucleus_scale": {
            "reference_diameter_px": config.get("reference_diameter", REFERENCE_DIAMETER_PX),
            "reference_diameter_um": REFERENCE_DIAMETER_UM,
            "trained_diameters_px": [
                round(config.get("reference_diameter", REFERENCE_DIAMETER_PX) * s, 1)
                for s in config.get("scale_range", SCALE_RANGE)
            ],
            "rule": "with µm/px unknown, zoom the image by reference_diameter_px / (median nucleus diameter in px); "
            "with µm/px known, zoom by image µm/px / mpp",
        },
        "output": "int32 instance labels (B,1,H,W), 0 = background, 1..n per image; post-processing inside",
        "architecture": f"U-Net widths {widths}, foreground + normalised distance heads; "
        "pure-torch seeds + geodesic dilation post-processing",
        "widths": widths,
        "parameters": int(sum(np.prod(s) for s in _parameter_shapes(widths))),
        "colour_gate": False,
        "training": {
            "data": "nuclei_fluo_train/dsb2018_fluorescence (DSB 2018 stage 1 fluorescence, 518 images, 20,958 nuclei)",
            "licences": ["CC0 1.0"],
            "commercial_use_ok": True,
            "initialisation": "random (no H&E weights: the fluorescence model owes nothing to non-commercial data)",
            "steps": step,
            "cpu_hours": round(hours, 3),
            "cpu_hours_note": "wall-clock hours of training steps, 1 torch thread, on a shared 2-core VM",
            "device": "cpu",
            **{k: config[k] for k in ("batch", "crop", "lr", "seed", "threads", "scale_range") if k in config},
            "augmentation": "zoom to the reference nucleus size x 0.6-1.6, flips, 90° turns, gamma 0.5-2, gain 0.6-1.4, "
            "offset ±0.1, defocus blur (p 0.3), Gaussian noise (p 0.5), crop-own normalisation (p 0.3)",
            "torch": torch.__version__,
            "command": "python -m wsi_assets.cli.train_fluorescence --checkpoints .train_fluo/ckpt --hours H",
        },
        "held_out_split": describe_split(),
        "held_out_scores": scores,
        "evaluation_command": "python benchmarks/fluorescence_validation.py",
    }


def _parameter_shapes(widths: list[int]) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in UNet(widths).parameters()]


def export_from_checkpoints(
    folder: Path,
    out: Path,
    which: str = "best",
    version: str = "",
    scores: dict | None = None,
    tune_images: list[FluoImage] | None = None,
    per_experiment: int = 3,
) -> Path:
    """Export the best (or newest) network of a checkpoint folder as a model file with its card;
    with `tune_images` (training images), the post-processing thresholds are chosen on them."""
    folder = Path(folder)
    state = checkpoints.load_latest(folder)
    if state is None:
        raise ValueError(f"no checkpoints in {folder}: train first")
    config = state["config"]
    best_file = folder / "best_net.pt"
    if which == "best" and best_file.exists():
        best = torch.load(best_file, map_location="cpu", weights_only=False)
        weights, step, hours = best["net"], best["step"], best["hours"]
        scores = scores or {"validation_during_training": best["scores"]}
    else:
        weights, step, hours = state["net"], state["step"], state["seconds"] / 3600
    net = UNet(list(config["widths"]))
    net.load_state_dict(weights)
    version = version or datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    card = model_card(list(config["widths"]), config, step, hours, scores, version)
    post = None
    if tune_images:
        reference = config.get("reference_diameter", REFERENCE_DIAMETER_PX)
        post, means = tune_postprocessing(net, tune_images, reference, per_experiment)
        card["postprocessing_tuned_on"] = (
            f"training images only: the first {per_experiment} of each training experiment, "
            f"mean of F1@0.5, AJI and PQ {means[tuple(post.values())]:.3f} "
            f"(at 0.5/0.5/8: {means[(0.5, 0.5, 8)]:.3f})"
        )
    return export(net, out, card, post)
