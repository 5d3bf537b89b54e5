"""What the embedding outputs cost and change: a model file before and after it gained them.

    python benchmarks/embedding_outputs.py OLD.pt [NEW.pt]   # NEW: the shipped model by default

1. Labels: the new file's `segment_batch` and `segment_batch_with_embeddings` must give the old
   file's labels bit for bit, on OpenVINO, ONNX Runtime and torch, for CoNSeP held-out crops at
   0.5 µm/px (run side by side), a 1152² tile of the CMU-1 slide and a 1000x1100 one (padded).
2. Maps: every path's embedding levels against torch's `labels_and_embedding_maps` (max abs difference).
3. Cost: CPU-seconds (process time, minimum of 5 after a warm-up, the candidates timed in turn,
   1 thread) per 1152² tile for the network alone (maps only, and maps + embedding levels) and
   for the whole segment call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
from wsi_assets.slides.reader import open_slide, read_level_rgb
from wsi_assets.training.data import at_mpp
from wsi_assets.training.evaluate import labelled_images

REPO = Path(__file__).resolve().parents[1]

DATA = REPO.parent / "shared" / "data"
RUNTIMES = ("openvino", "onnxruntime", "torch")


def cpu_seconds(candidates: dict[str, object], rounds: int = 5) -> dict[str, float]:
    """Each candidate's minimum CPU-seconds over `rounds`, taken in turn so drift hits all alike."""
    best = {name: float("inf") for name in candidates}
    for round_ in range(rounds + 1):  # round 0 warms up (compiles the static-shape network)
        for name, fn in candidates.items():
            start = time.process_time()
            fn()
            if round_:
                best[name] = min(best[name], time.process_time() - start)
    return best


def inputs() -> dict[str, np.ndarray]:
    """Named (B,H,W,3) batches: CoNSeP held-out crops at 0.5 µm/px, and CMU-1 tiles (~0.5 µm/px)."""
    consep = [i for i in labelled_images(DATA / "nuclei_train") if i.dataset == "consep_train"]
    crops = [at_mpp(item, 0.5)[0] for item in consep[:8]]
    side = min(min(c.shape[:2]) for c in crops)
    slide = open_slide(DATA / "slides" / "CMU-1-Small-Region.svs")
    return {
        f"consep x{len(crops)} {side}²": np.stack([c[:side, :side] for c in crops]),
        "cmu 1152²": read_level_rgb(slide, 600, 800, 0, 1152, 1152)[None],
        "cmu 1000x1100": read_level_rgb(slide, 300, 200, 0, 1100, 1000)[None],
    }


def compare_labels(old: Path, new: Path, batches: dict[str, np.ndarray]) -> None:
    print("| runtime | input | nuclei | old = new segment_batch | old = new with embeddings | embedding max abs diff vs torch |")
    print("| --- | --- | --- | --- | --- | --- |")
    reference = TorchScriptSegmenter(new, device="cpu", cpu_runtime="torch")
    for runtime in RUNTIMES:
        before = TorchScriptSegmenter(old, device="cpu", cpu_runtime=runtime)
        after = TorchScriptSegmenter(new, device="cpu", cpu_runtime=runtime)
        if after.runtime.split()[0] != runtime:
            print(f"| {runtime} | not installed | | | | |")
            continue
        for name, tiles in batches.items():
            expected = before.segment_batch(tiles)
            labels, maps = after.segment_batch_with_embeddings(tiles)
            _, torch_maps = reference.segment_batch_with_embeddings(tiles)
            gap = max(
                float(np.abs(a - b).max())
                for tile, torch_tile in zip(maps, torch_maps)
                for a, b in zip(tile.levels, torch_tile.levels)
            )
            same = np.array_equal(after.segment_batch(tiles), expected)
            print(
                f"| {after.runtime} | {name} | {int(expected.max())} | {same} | {np.array_equal(labels, expected)} | {gap:.2e} |"
            )


def network_candidates(before: TorchScriptSegmenter, after: TorchScriptSegmenter, x: np.ndarray) -> dict:
    """The network alone: the CPU runtime's outputs, or in torch the frozen U-Net of each file."""
    if after.runner is not None:
        return {
            "network old": lambda: before.runner.run(x, 1),
            "network new, maps": lambda: after.runner.run(x, 1),
            "network new, maps + embedding": lambda: after.runner.run(x, None),
        }
    t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last) / 255.0
    old_net = torch.jit.freeze(torch.jit.load(str(before.path), map_location="cpu").net.eval())
    new_net = torch.jit.freeze(
        torch.jit.load(str(after.path), map_location="cpu").net.eval(), preserved_attrs=["forward_with_levels"]
    )
    return {
        "network old": lambda: old_net(t),
        "network new, maps": lambda: new_net(t),
        "network new, maps + embedding": lambda: new_net.forward_with_levels(t, [4, 8]),
    }


def compare_cost(old: Path, new: Path, tile: np.ndarray, rounds: int) -> None:
    torch.set_num_threads(1)
    x = np.ascontiguousarray(tile.transpose(0, 3, 1, 2), np.float32)
    print(f"\none {tile.shape[1]}x{tile.shape[2]} tile, 1 thread, CPU-s (min of {rounds}, candidates in turn)")
    header = None
    for runtime in RUNTIMES:
        before = TorchScriptSegmenter(old, device="cpu", cpu_runtime=runtime)
        after = TorchScriptSegmenter(new, device="cpu", cpu_runtime=runtime)
        if after.runtime.split()[0] != runtime:
            continue
        with torch.inference_mode():
            seconds = cpu_seconds(
                {
                    **network_candidates(before, after, x),
                    "segment_batch old": lambda: before.segment_batch(tile),
                    "segment_batch new": lambda: after.segment_batch(tile),
                    "with embeddings new": lambda: after.segment_batch_with_embeddings(tile),
                },
                rounds,
            )
        if header is None:
            header = list(seconds)
            print("| runtime | " + " | ".join(header) + " |")
            print("| --- " * (len(header) + 1) + "|")
        print(f"| {after.runtime} | " + " | ".join(f"{seconds[name]:.3f}" for name in header) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the model file before it had the embedding outputs")
    parser.add_argument("new", type=Path, nargs="?", default=SHIPPED_MODEL_FILE)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batches = inputs()
    compare_labels(args.old, args.new, batches)
    if not args.no_timing:
        compare_cost(args.old, args.new, batches["cmu 1152²"], args.rounds)


if __name__ == "__main__":
    main()
