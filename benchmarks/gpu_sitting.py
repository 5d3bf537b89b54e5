"""The GPU sitting: fine-tune the shipped model for a few minutes on a GPU, score it, and measure
the whole-slide speed on that GPU, all in one command that fits a lent machine's 10 minutes.

    python benchmarks/gpu_sitting.py --minutes 8 --out OUT_DIR [--data DIR]
    python benchmarks/gpu_sitting.py --minutes 1 --max-steps 2 --slide-size 2048x2048 --out /tmp/s   # CPU smoke test
    python benchmarks/gpu_sitting.py pack --out .gpu_sitting/nuclei_train   # data small enough to travel

Stages, each bounded by the deadline (start + --minutes):
1. training: from the shipped model's weights (or, with --widths, from a narrower network cut out of
   them and taught by the shipped model's maps: wsi_assets/training/distill.py), on every training image of the labelled set
   (CoNSeP included; the held-out split of wsi_assets/training/split.py never), large batches
   and crops in bf16 on CUDA, crops made by parallel worker processes (wsi_assets/training/timed_train.py);
2. post-processing thresholds tuned on training images, then the model and its card written;
3. held-out scores of the new and the starting model (F1@0.5, AJI, PQ per dataset), which is better,
   and whether the new one passes the accuracy gate against the start (what a narrower student must do);
4. whole-slide speed on a synthetic slide: decode-only against open → tissue → cells.parquet
   (exports are CPU work the same on any device; they are left out where zarr is missing).

Writes to --out: the model (`nuclei_unet_<version>.pt` + card), `sitting.json` (every figure) and
`sitting.log`. `pack` writes the labelled set resampled to the model's µm/px with JPEG images, so
it fits the 64 MiB a device call carries; scores on it are for comparing models, the official
held-out figures come from benchmarks/evaluate_model.py on the original files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.torchscript import read_model_card, resolve_device
from wsi_assets.training import defaults, split
from wsi_assets.training.data import at_mpp, list_labelled_folder, load_images, parse_dataset_shares
from wsi_assets.training.accuracy_gate import gate_failures
from wsi_assets.training.distill import narrowed, parse_widths
from wsi_assets.training.train import export, load_trained_net, tune_postprocessing

REPO = Path(__file__).resolve().parents[1]

# Time kept back from training for the stages after it, as measured on the H200 (scaled down on
# a CPU smoke run by --max-steps, which ends training early anyway).
RESERVE_S = 150


class Log:
    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.started:6.1f} s] {message}"
        print(line, flush=True)
        self.file.write(line + "\n")


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def split_items(data: Path):
    table = list_labelled_folder(data)
    held = np.array([split.is_held_out(d, s) for d, s in zip(table["dataset"], table["stem"])], bool)
    return load_images(data, table[~held]), load_images(data, table[held])


def held_out_scores(model_file: Path, device: str, images: list) -> pd.DataFrame:
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
    from wsi_assets.training.evaluate import score, summarise

    segmenter = TorchScriptSegmenter(model_file, device=device)
    scores, _ = score(segmenter, images)
    return summarise(scores)


def quality(table: pd.DataFrame) -> float:
    """One number to rank models: the mean of F1, AJI and PQ, each dataset counted equally."""
    per_set = table.drop(index="all", errors="ignore")
    return float(per_set[["F1@0.5", "AJI", "PQ"]].mean(axis=1).mean())


def whole_slide_speed(model_file: Path, device: str, size: str, work: Path, read_threads: int, batch: int, log) -> dict:
    from slide_throughput import decode_only, end_to_end, synthetic_slide, tissue_of

    from wsi_assets.segmentation.slide import TilingSettings
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
    from wsi_assets.slides.mpp import read_slide_info
    from wsi_assets.slides.synthetic import count_synthetic_nuclei, read_synthetic_spec

    started = time.perf_counter()
    path = synthetic_slide(size, 3, work)
    log(f"synthetic slide {path.name} ready in {time.perf_counter() - started:.0f} s")
    settings = TilingSettings(read_threads=read_threads, batch_size=batch, postprocess_threads=read_threads)
    info = read_slide_info(path)
    tissue = tissue_of(path, info.mpp, info.width, info.height)
    segmenter = TorchScriptSegmenter(model_file, device=device)
    decode = decode_only(path, info.mpp, tissue, segmenter.mpp, settings)
    try:
        import zarr  # noqa: F401

        exports = True
    except ImportError:
        exports = False
    cells_dir = work / "e2e"
    cells_dir.mkdir(exist_ok=True)
    e2e = end_to_end(path, cells_dir, info.mpp, settings, segmenter, exports=exports)
    spec = read_synthetic_spec(path)
    decode_rate = tissue.area_mm2 / decode["seconds"]
    e2e_rate = e2e["tissue_mm2"] / e2e["seconds"]
    return {
        "slide": path.name,
        "mpix": round(info.width * info.height / 1e6, 1),
        "tissue_mm2": round(tissue.area_mm2, 2),
        "tiles": decode["tiles"],
        "read_threads": read_threads,
        "batch": batch,
        "exports_included": exports,
        "decode_s": round(decode["seconds"], 2),
        "decode_mm2_per_s": round(decode_rate, 3),
        "end_to_end_s": round(e2e["seconds"], 2),
        "end_to_end_mm2_per_s": round(e2e_rate, 3),
        "speed_ratio": round(e2e_rate / decode_rate, 3),
        "nuclei_found": e2e["nuclei"],
        "nuclei_drawn": count_synthetic_nuclei(spec) if spec else None,
        "device": e2e["device"],
    }


def sitting(args) -> dict:
    deadline = time.perf_counter() + args.minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "sitting.log")
    result: dict = {"machine": machine(), "command": " ".join(sys.argv)}

    def save() -> None:
        (args.out / "sitting.json").write_text(json.dumps(result, indent=2, default=str))

    log(f"machine: {result['machine']}")
    device = resolve_device(args.device)
    train_items, held_items = split_items(args.data)
    log(f"{len(train_items)} training and {len(held_items)} held-out images from {args.data}")
    init_card = read_model_card(args.init)
    net = load_trained_net(args.init, init_card)
    mpp = float(init_card.get("mpp") or defaults.MODEL_MPP)
    teacher = None
    if args.widths and list(args.widths) != list(net.widths):
        teacher, net = net, narrowed(net, args.widths)
        log(f"student of widths {args.widths} cut out of {args.init.name} (widths {teacher.widths}), taught by it")

    from wsi_assets.training.timed_train import train_for

    workers = args.workers if args.workers >= 0 else max(1, (os.cpu_count() or 2) - 2)
    train_seconds = max(5.0, deadline - time.perf_counter() - args.reserve_s)
    log(f"training for {train_seconds:.0f} s on {device} with {workers} crop workers")
    trained = train_for(
        net,
        train_items,
        mpp,
        train_seconds,
        device,
        args.batch,
        args.crop,
        args.lr,
        workers,
        args.seed,
        defaults.STAIN_JITTER,
        defaults.SCALE_JITTER,
        max_steps=args.max_steps,
        log=log,
        dataset_shares=args.dataset_shares,
        teacher=teacher,
        distill_weight=args.distill_weight,
    )
    result["training"] = {
        "steps": trained.steps,
        "seconds": round(trained.seconds, 1),
        "crops_per_s": round(trained.crops_per_s, 1),
        "waited_for_data_s": round(trained.waiting_for_data_s, 1),
        "final_loss": round(trained.final_loss, 4),
        "batch": args.batch,
        "crop": args.crop,
        "lr": args.lr,
        "workers": workers,
        "dataset_shares": args.dataset_shares,
        "widths": list(trained.net.widths),
        "teacher": f"version {init_card.get('version')}" if teacher is not None else None,
        "distill_weight": args.distill_weight if teacher is not None else None,
    }
    save()

    post = tune_postprocessing(trained.net, train_items, mpp, log, device=device, max_per_dataset=args.tune_images)
    trained.net.cpu()
    card = dict(init_card)
    card.pop("postprocessing", None)
    datasets = pd.Series([i.dataset for i in train_items]).value_counts().sort_index()
    card["version"] = args.version
    if teacher is not None:
        widths = list(trained.net.widths)
        card["widths"] = widths
        card["parameters"] = sum(p.numel() for p in trained.net.parameters())
        card["architecture"] = (
            f"U-Net widths {widths}, foreground + normalised distance heads, distilled from "
            f"version {init_card.get('version')} (widths {list(teacher.widths)})"
        )
    card["training"] = {
        "data": str(args.data),
        "images": len(train_items),
        "datasets": datasets.to_dict(),
        "init": f"version {init_card.get('version')}",
        "device": str(device),
        "machine": result["machine"],
        **result["training"],
        "stain_jitter": defaults.STAIN_JITTER,
        "scale_jitter": defaults.SCALE_JITTER,
        "seed": args.seed,
        "mixed_precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "history": (init_card.get("training") or {}).get("history", [])
        + [
            {k: (init_card.get("training") or {}).get(k) for k in ("steps", "batch", "crop", "lr", "seed", "device", "seconds")}
            | {"version": init_card.get("version")}
        ],
        "command": result["command"],
    }
    card["held_out_split"] = split.describe()
    model_file = args.out / f"nuclei_unet_{args.version}.pt"
    export(trained.net.eval(), card, model_file, **post)
    log(f"wrote {model_file.name} ({model_file.stat().st_size / 1e6:.1f} MB), post-processing {post}")
    result["model_file"] = model_file.name
    result["postprocessing"] = post
    save()

    scores = {}
    for name, path in (("new", model_file), ("start", Path(args.init))):
        started = time.perf_counter()
        scores[name] = held_out_scores(path, str(device), held_items)
        log(f"held-out scores of the {name} model ({time.perf_counter() - started:.0f} s):\n{scores[name].round(3).to_string()}")
    result["held_out"] = {name: table.round(4).to_dict(orient="index") for name, table in scores.items()}
    result["held_out_quality"] = {name: round(quality(table), 4) for name, table in scores.items()}
    result["new_is_better"] = result["held_out_quality"]["new"] > result["held_out_quality"]["start"]
    result["gate_failures"] = gate_failures(scores["start"], scores["new"])
    result["new_passes_gate"] = not result["gate_failures"]
    log(f"accuracy gate against the start: {'passed' if result['new_passes_gate'] else result['gate_failures']}")
    log(f"mean of F1/AJI/PQ over datasets: {result['held_out_quality']}; new is better: {result['new_is_better']}")
    save()

    if args.slide_size:
        work = args.out / "slide_work" if args.keep_slide else Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        try:
            result["whole_slide"] = whole_slide_speed(
                model_file, str(device), args.slide_size, work, args.read_threads, args.slide_batch, log
            )
            log(f"whole slide: {result['whole_slide']}")
        finally:
            if not args.keep_slide:
                shutil.rmtree(work / "e2e", ignore_errors=True)
    result["seconds"] = round(args.minutes * 60 - (deadline - time.perf_counter()), 1)
    log(f"done in {result['seconds']:.0f} s")
    save()
    return result


def pack(data: Path, out: Path, mpp: float, quality: int) -> None:
    """The labelled set at `mpp`, images as JPEG, with a manifest saying so."""
    table = list_labelled_folder(data)
    rows = []
    for item, (_, row) in zip(load_images(data, table), table.iterrows()):
        rgb, labels = at_mpp(item, mpp)
        image = Path(item.dataset) / "images" / f"{item.stem}.jpg"
        label = Path(item.dataset) / "labels" / f"{item.stem}.png"
        (out / image).parent.mkdir(parents=True, exist_ok=True)
        (out / label).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        cv2.imwrite(str(out / label), labels.astype(np.uint16))
        rows.append(
            {
                **row.drop(labels=["stem"]).to_dict(),
                "image": image.as_posix(),
                "label": label.as_posix(),
                "width": rgb.shape[1],
                "height": rgb.shape[0],
                "microns_per_pixel": str(mpp),
            }
        )
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {len(rows)} images at {mpp} µm/px into {out} ({size / 1e6:.1f} MB)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "pack":
        parser = argparse.ArgumentParser(description="pack the labelled set for the GPU machine")
        parser.add_argument("pack")
        parser.add_argument("--data", type=Path, default=None)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--quality", type=int, default=92)
        args = parser.parse_args()
        pack(args.data or defaults.default_training_data(), args.out, defaults.MODEL_MPP, args.quality)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole sitting's wall-clock budget")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="labelled folder (default: the shared nuclei_train)")
    parser.add_argument("--init", type=Path, default=SHIPPED_MODEL_FILE, help="model to start from (default: the shipped one)")
    parser.add_argument("--version", default="4")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--crop", type=int, default=128, help="crop side at the model µm/px (CoNSeP crops are 128 px there)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=-1, help="crop worker processes (-1: CPUs - 2; 0: in the training process)"
    )
    parser.add_argument(
        "--dataset-share",
        action="append",
        default=[],
        metavar="DATASET=FRACTION",
        help="draw this fraction of the crops from one dataset (repeatable), e.g. consep_train=0.25; the rest by area",
    )
    parser.add_argument(
        "--widths",
        default="",
        help="train a narrower student of --init with these channels per level, "
        "e.g. 8,16,32,64,96 (default: fine-tune --init as it is)",
    )
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the teacher's maps in a student's loss")
    parser.add_argument("--max-steps", type=int, default=0, help="stop training after N steps (smoke tests)")
    parser.add_argument("--reserve-s", type=float, default=RESERVE_S, help="seconds kept for the stages after training")
    parser.add_argument("--tune-images", type=int, default=12, help="training images per dataset used to tune post-processing")
    parser.add_argument("--slide-size", default="32768x32768", help="synthetic slide for the speed measurement ('' to skip)")
    parser.add_argument("--read-threads", type=int, default=8)
    parser.add_argument("--slide-batch", type=int, default=16)
    parser.add_argument("--work", default="/tmp/wsi_gpu_sitting", help="scratch folder for the synthetic slide")
    parser.add_argument("--keep-slide", action="store_true", help="keep the synthetic slide under --out")
    args = parser.parse_args()
    args.data = args.data or defaults.default_training_data()
    try:
        args.dataset_shares = parse_dataset_shares(args.dataset_share)
        args.widths = parse_widths(args.widths) if args.widths else []
    except ValueError as error:
        parser.error(str(error))
    if not Path(args.data).is_dir():
        sys.exit(f"error: no labelled images in {args.data}: give --data a folder with manifest.csv or images/ + labels/")
    sitting(args)


if __name__ == "__main__":
    main()
