"""Training the nucleus classifier network on CoNSeP on the CPU: resumable, logged, held out by tile.

The crops are cut once into `<run>/crops.npz` (nucleus_cnn_cache). Each step draws a batch with
classes balanced by the square root of their counts (full balance would show CoNSeP's ~300
"other" nuclei a quarter of the time), and within a class its tiles by the square root of theirs,
augments it (any rotation, flips, ±10% scale, ±3 px shift, H&E optical density ±30% (`--stain-jitter`), brightness
and contrast: strong, since CoNSeP's classes are lopsided by tile and so by stain) and takes an AdamW step on a
cosine schedule. An exponential moving average of the weights is what is scored and exported;
nothing is chosen on the held-out tiles: the model is the average at the last step.

Crops are cut from stain-normalised images (cells.stain_normalisation, per image, as inference
does); the recipe is recorded in the cache and every checkpoint, and a run never mixes two.
`--init CKPT` starts a new run from another checkpoint's averaged weights (a fresh optimiser and
schedule), e.g. to carry a network trained on raw pixels over to normalised ones.

Every `--checkpoint-minutes` the whole state (weights, average, optimiser, random states, step,
CPU seconds) goes to `<run>/stepNNNNNNNN.ckpt`; started again, it resumes from the newest.
`<run>/log.jsonl` has a line per `--log-every` steps (loss, learning rate, speed) and per-class F1
on the held-out tiles every `--eval-every` steps, on annotated and on found outlines.

The command line (training and export): wsi_assets.cli.train_nucleus_cnn.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.nucleus_cnn import CROP, MPP
from wsi_assets.cells.stain_normalisation import STAIN_NORMALISATION
from wsi_assets.training.checkpoints import load_latest, save_checkpoint
from wsi_assets.training.nucleus_cnn_cache import CACHE, build_cache, cache_normalisation, load_cache
from wsi_assets.training.nucleus_cnn_net import NucleusNet
from wsi_assets.training.nucleus_cnn_scores import held_out_scores
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES

CACHE_NAME = "crops.npz"
LOG_NAME = "log.jsonl"
# Ruifrok & Johnston's H&E(-DAB) optical density vectors, rows H, E, residual (skimage.color.rgb_from_hed)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)


def class_draw_probabilities(classes: np.ndarray) -> np.ndarray:
    """Per-class probability of drawing a class: proportional to the square root of its count."""
    counts = np.bincount(classes, minlength=len(CLASS_NAMES)).astype(np.float64)
    weights = np.sqrt(counts)
    return weights / weights.sum()


def class_tile_groups(rows: np.ndarray, classes: np.ndarray, tiles: np.ndarray) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Per class: its rows grouped by tile, and each tile's probability of being drawn (square root of
    its count). CoNSeP's classes are lopsided by tile (one tile holds over half the training
    inflammatory nuclei, all darkly stained): drawn plainly, the network learns the tile's stain."""
    groups = []
    for c in range(len(CLASS_NAMES)):
        mine = rows[classes[rows] == c]
        names, inverse = np.unique(tiles[mine], return_inverse=True)
        members = [mine[inverse == k] for k in range(len(names))]
        weights = np.sqrt([len(m) for m in members]) if members else np.zeros(0)
        groups.append((members, weights / weights.sum() if len(weights) else weights))
    return groups


def draw_batch(rng: np.random.Generator, groups: list, probabilities: np.ndarray, size: int) -> np.ndarray:
    """`size` rows: a class by `probabilities`, then one of its tiles, then one of that tile's nuclei."""
    picked = []
    for c in rng.choice(len(groups), size=size, p=probabilities):
        members, weights = groups[c]
        rows = members[rng.choice(len(members), p=weights)]
        picked.append(rows[rng.integers(len(rows))])
    return np.array(picked)


def stain_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """(N,H,W,3) float 0..255 with each image's H, E and residual densities scaled and shifted a little."""
    n = len(rgb)
    density = -np.log((rgb + 1.0) / 256.0) @ HED_FROM_RGB
    alpha = rng.uniform(1 - strength, 1 + strength, (n, 1, 1, 3)).astype(np.float32)
    beta = rng.uniform(-0.03, 0.03, (n, 1, 1, 3)).astype(np.float32)
    out = 256.0 * np.exp(-((density * alpha + beta) @ RGB_FROM_HED)) - 1.0
    contrast = rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(-20, 20, (n, 1, 1, 1)).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((out - mean) * contrast + mean + brightness, 0, 255)


def augment(windows: np.ndarray, rng: np.random.Generator, crop: int = CROP, stain_strength: float = 0.2) -> np.ndarray:
    """(N,4,CACHE,CACHE) uint8 windows -> (N,4,crop,crop) float32: turned, flipped, scaled, shifted, stain-jittered."""
    n, size = len(windows), windows.shape[-1]
    out = np.empty((n, crop, crop, 4), np.float32)
    centre_xy = (size - 1) / 2.0
    for k in range(n):
        hwc = windows[k].transpose(1, 2, 0)
        matrix = cv2.getRotationMatrix2D((centre_xy, centre_xy), float(rng.uniform(0, 360)), float(rng.uniform(0.9, 1.1)))
        if rng.random() < 0.5:
            matrix[0] = -matrix[0]
            matrix[0, 2] += size - 1
        matrix[:, 2] += rng.uniform(-3, 3, 2) - (size - crop) / 2.0
        rgb = cv2.warpAffine(
            np.ascontiguousarray(hwc[..., :3]), matrix, (crop, crop), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        mask = cv2.warpAffine(
            np.ascontiguousarray(hwc[..., 3]), matrix, (crop, crop), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
        )
        out[k, ..., :3] = rgb
        out[k, ..., 3] = mask
    out[..., :3] = stain_jitter(out[..., :3], rng, stain_strength)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def learning_rate(step: int, steps: int, peak: float, warmup: int = 300) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def new_state(seed: int) -> dict:
    torch.manual_seed(seed)
    net = NucleusNet(len(CLASS_NAMES))
    ema = NucleusNet(len(CLASS_NAMES))
    ema.load_state_dict(net.state_dict())
    return {"step": 0, "net": net, "ema": ema, "rng": np.random.default_rng(seed), "cpu_seconds": 0.0, "seed": seed}


def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for average, current in zip(ema.state_dict().values(), net.state_dict().values()):
            if average.dtype.is_floating_point:
                average.mul_(decay).add_(current, alpha=1 - decay)
            else:
                average.copy_(current)


def _write_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def train(
    run: Path,
    data: Path | None = None,
    steps: int = 8000,
    batch: int = 64,
    peak_lr: float = 2e-3,
    minutes: float | None = None,
    checkpoint_minutes: float = 5.0,
    eval_every: int = 500,
    log_every: int = 50,
    seed: int = 0,
    limit: int | None = None,
    segmenter: str | None = "learned",
    normalisation: str | None = STAIN_NORMALISATION,
    init: Path | None = None,
    stain_strength: float = 0.3,
    log=print,
) -> dict:
    """Train (or resume) until `steps` or `minutes` of wall time; the final state's summary."""
    torch.set_num_threads(1)
    run = Path(run)
    cache_path = run / CACHE_NAME
    if not cache_path.is_file():
        if data is None:
            raise FileNotFoundError(
                f"{run} has no {CACHE_NAME} yet: give --data, the typed folder (CoNSeP's layout) to cut it from"
            )
        from wsi_assets.segmentation.registry import get_segmenter

        build_cache(
            Path(data),
            cache_path,
            get_segmenter(segmenter, device="cpu") if segmenter else None,
            limit=limit,
            normalisation=normalisation,
            log=log,
        )
    cache = load_cache(cache_path)
    if cache_normalisation(cache) != normalisation:
        raise ValueError(
            f"{cache_path} was cut with stain normalisation {cache_normalisation(cache) or 'none'}, not {normalisation or 'none'}: "
            "train in a new --run folder (or give the normalisation it was cut with)"
        )
    held = np.isin(cache["tiles"], list(HELD_OUT_CONSEP_TILES))
    if held.all():
        raise ValueError(
            f"{cache_path.name}: every crop is from the held-out tiles {', '.join(HELD_OUT_CONSEP_TILES)}: nothing to train on"
        )
    train_rows = np.flatnonzero(~held)
    groups = class_tile_groups(train_rows, cache["classes"], cache["tiles"])
    present = np.array([len(members) > 0 for members, _ in groups])
    probabilities = class_draw_probabilities(cache["classes"][train_rows]) * present
    probabilities /= probabilities.sum()

    state = new_state(seed)
    optimiser = torch.optim.AdamW(state["net"].parameters(), lr=peak_lr, weight_decay=1e-4)
    saved = load_latest(run)
    if saved is not None and saved.get("normalisation") != normalisation:
        raise ValueError(
            f"{run}'s checkpoints were trained with stain normalisation {saved.get('normalisation') or 'none'}, not {normalisation or 'none'}: train in a new --run folder"
        )
    if saved is None and init is not None:
        start = torch.load(init, map_location="cpu", weights_only=False)
        state["net"].load_state_dict(start["ema"])
        state["ema"].load_state_dict(start["ema"])
        state["init"] = f"{Path(init).name} (step {start['step']}, stain normalisation {start.get('normalisation') or 'none'})"
        log(f"started from {state['init']}'s averaged weights")
    if saved is not None:
        state["net"].load_state_dict(saved["net"])
        state["ema"].load_state_dict(saved["ema"])
        optimiser.load_state_dict(saved["optimiser"])
        state["rng"].bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        state.update(step=saved["step"], cpu_seconds=saved["cpu_seconds"], init=saved.get("init"))
        if saved.get("steps", steps) != steps:
            log(f"the schedule was {saved['steps']} steps, now {steps}: the learning rate follows the new length from here")
        log(f"resumed at step {state['step']} of {steps}")
    net, ema, rng = state["net"], state["ema"], state["rng"]
    log_path = run / LOG_NAME
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    started = last_checkpoint = time.monotonic()
    cpu_started = time.process_time()
    running, seen = 0.0, 0

    def checkpoint() -> Path:
        cpu = state["cpu_seconds"] + time.process_time() - cpu_started
        return save_checkpoint(
            run,
            state["step"],
            {
                "net": net.state_dict(),
                "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": state["step"],
                "steps": steps,
                "cpu_seconds": cpu,
                "seed": seed,
                "widths": list(net.widths),
                "crop": CROP,
                "mpp": MPP,
                "cache": CACHE,
                "normalisation": normalisation,
                "stain_strength": stain_strength,
                "init": state.get("init"),
            },
        )

    while state["step"] < steps:
        if minutes is not None and time.monotonic() - started > minutes * 60:
            break
        net.train()
        rows = draw_batch(rng, groups, probabilities, batch)
        inputs = torch.from_numpy(augment(cache["crops"][rows], rng, stain_strength=stain_strength))
        targets = torch.from_numpy(cache["classes"][rows].astype(np.int64))
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(state["step"], steps, peak_lr)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(net(inputs), targets)
        loss.backward()
        optimiser.step()
        state["step"] += 1
        _ema_update(ema, net, min(0.998, (1 + state["step"]) / (10 + state["step"])))
        running, seen = running + loss.item(), seen + 1
        step = state["step"]
        if step % log_every == 0:
            elapsed = time.monotonic() - started
            _write_log(
                log_path,
                {
                    "step": step,
                    "loss": round(running / seen, 4),
                    "lr": round(optimiser.param_groups[0]["lr"], 6),
                    "cpu_seconds": round(state["cpu_seconds"] + time.process_time() - cpu_started, 1),
                    "wall_seconds_this_run": round(elapsed, 1),
                },
            )
            running, seen = 0.0, 0
        if step % eval_every == 0 or step == steps:
            scores = held_out_scores(ema, cache, held)
            _write_log(log_path, {"step": step, "held_out_f1": scores})
            log(f"step {step}: held-out F1 {json.dumps(scores)}")
        if time.monotonic() - last_checkpoint > checkpoint_minutes * 60:
            checkpoint()
            last_checkpoint = time.monotonic()
    path = checkpoint()
    log(f"checkpoint {path} at step {state['step']} of {steps}")
    return {
        "step": state["step"],
        "steps": steps,
        "checkpoint": str(path),
        "cpu_seconds": round(state["cpu_seconds"] + time.process_time() - cpu_started, 1),
    }
