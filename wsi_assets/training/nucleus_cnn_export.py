"""A nucleus classifier network's checkpoint as the shipped file: ONNX beside its model card.

The card records what the network was trained on, the held-out tiles and its scores there, the
CPU-hours its training took (summed over every resume) and its cost per 1,000 nuclei on this CPU.
End-to-end scores (found nuclei, both weightings) come from `benchmarks/cell_classes_diagnosis.py`
and are merged in when its JSON is given.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from wsi_assets.cells.classes import CLASS_NAMES
from wsi_assets.cells.nucleus_cnn import CARD_SUFFIX, CHANNELS, CROP, MPP, nucleus_cnn_from_bytes
from wsi_assets.training.checkpoints import latest_checkpoint
from wsi_assets.training.nucleus_cnn_net import NucleusNet, network_onnx
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES

VERSION = 2  # v2: stain-normalised inputs (v1 read raw pixels)


def checkpoint_network(path: Path) -> tuple[NucleusNet, dict]:
    """The averaged (EMA) network of a training checkpoint, and the checkpoint's state."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = NucleusNet(len(CLASS_NAMES), tuple(state["widths"]))
    net.load_state_dict(state["ema"])
    return net.eval(), state


def cost_per_1000(onnx: bytes, repeats: int = 3, count: int = 1024) -> float:
    """CPU seconds (one thread, ONNX Runtime) to classify 1,000 nuclei's crops, best of `repeats`."""
    model = nucleus_cnn_from_bytes(onnx, CLASS_NAMES)
    crops = np.random.default_rng(0).integers(0, 256, (count, CHANNELS, CROP, CROP), dtype=np.uint8)
    model.probabilities(crops[:64])
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        model.probabilities(crops)
        best = min(best, time.process_time() - started)
    return round(best * 1000 / count, 3)


def export_network(
    run: Path, out: Path, scores: Path | None = None, timing_crops: int = 1024, history: str | None = None
) -> dict:
    """Write `out` (.onnx) and `<stem>.model_card.json` from the newest checkpoint in `run`."""
    from wsi_assets.training.nucleus_cnn_scores import held_out_scores
    from wsi_assets.training.nucleus_cnn_cache import load_cache

    path = latest_checkpoint(run)
    if path is None:
        raise FileNotFoundError(f"{run} holds no checkpoint (stepNNNNNNNN.ckpt): train first")
    net, state = checkpoint_network(path)
    onnx = network_onnx(net, state.get("crop", CROP))
    cache = load_cache(Path(run) / "crops.npz")
    held = np.isin(cache["tiles"], list(HELD_OUT_CONSEP_TILES))
    card = {
        "name": "nucleus_classifier_cnn",
        "version": VERSION,
        "kind": f"CNN, widths {list(net.widths)}, {sum(p.numel() for p in net.parameters()):,} weights; ONNX opset 17, softmax output",
        "classes": list(CLASS_NAMES),
        "input": {
            "name": "crops",
            "shape": ["N", CHANNELS, CROP, CROP],
            "dtype": "float32 valued 0..255",
            "channels": "R, G, B, then 255 on the nucleus's own pixels",
            "mpp": MPP,
            "window": "centred on the nucleus centroid, image reflected at its edges",
            "normalisation": (
                f"{state['normalisation']}: each image (tile) stain-normalised as a whole before cropping (wsi_assets.cells.stain_normalisation)"
                if state.get("normalisation")
                else "none: raw pixels"
            ),
        },
        "crop": CROP,
        "mpp": MPP,
        "normalisation": state.get("normalisation"),
        "data": {
            "folder": "consep_train (CoNSeP train split, 27 tiles as 256² crops at 0.25 µm/px, resampled to 0.5)",
            "training_tiles": sorted(set(cache["tiles"][~held].tolist())),
            "held_out_tiles": list(HELD_OUT_CONSEP_TILES),
            "training_windows": int((~held).sum()),
            "outlines": "each typed nucleus twice: its annotated outline, and the outline of wsi-nuclei-unet v4's nucleus paired with it (3 µm)",
            "class_counts_train": {name: int(np.sum(cache["classes"][~held] == i)) for i, name in enumerate(CLASS_NAMES)},
        },
        "training": {
            "checkpoint": path.name,
            "step": int(state["step"]),
            "steps": int(state["steps"]),
            "batch": 64,
            "seed": int(state["seed"]),
            "sampling": "a class in proportion to the square root of its count, then one of its tiles by the square root of theirs",
            "augmentation": f"any rotation, flips, ±10% scale, ±3 px shift, H&E optical density ×(1±{round(100 * state.get('stain_strength', 0.2))}%) ±0.03, brightness ±20, contrast ±20%",
            "optimiser": "AdamW, cosine schedule, label smoothing 0.05; exported weights: exponential moving average (0.998)",
            "cpu_hours": round(float(state["cpu_seconds"]) / 3600, 3),
            "cpu_seconds": round(float(state["cpu_seconds"]), 1),
            "machine": f"{os.cpu_count()}-core CPU VM, one torch thread",
            **({"initialised_from": state["init"]} if state.get("init") else {}),
            **({"history": history} if history else {}),
        },
        "validation": {
            "what": "per-class F1 on the held-out tiles' nuclei given to the network (classification alone), by whose outline the mask channel is",
            "given_nuclei": held_out_scores(net, cache, held),
        },
        "cpu_seconds_per_1000_nuclei": cost_per_1000(onnx, count=timing_crops),
        "cost_note": "ONNX Runtime, one thread, network only (crops cut beforehand), best of 3",
        "licence": "trained on CoNSeP (Graham et al. 2019, HoVer-Net), Apache-2.0 as stated by third parties; cite the paper",
    }
    if scores is not None:
        card["validation"]["end_to_end"] = json.loads(Path(scores).read_text(encoding="utf-8"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onnx)
    out.with_name(out.stem + CARD_SUFFIX).write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    return card
