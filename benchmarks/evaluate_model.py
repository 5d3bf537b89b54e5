"""Held-out scores of the learned nucleus model and the classical segmenter, and model timings.

Scores: F1@0.5 (pooled), AJI and PQ (per-image means) per dataset on the held-out split of
../shared/data/nuclei_train (wsi_assets/training/split.py), each image segmented at its own
µm/px. "monuseg2018_train@20x" is the same held-out MoNuSeg images downsampled 2x (0.5 µm/px),
as a 20x scan would show them. Timings: one 1024² tile at the model's µm/px on CPU.

    python benchmarks/evaluate_model.py [--model default|classical|PATH] [--no-classical] [--timing]
    python benchmarks/evaluate_model.py --model STUDENT.pt --gate-against default --no-classical
        # also: does --model pass the accuracy gate (no F1/AJI/PQ more than half a point lower on any
        # dataset) against another model, as a faster variant of it must
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.training.evaluate import downsampled, labelled_images, score, summarise

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train"


def held_out_table(model: str, data: Path, device: str) -> pd.DataFrame:
    images = labelled_images(data)
    images += [downsampled(i, 2.0, "@20x") for i in images if i.dataset.startswith("monuseg")]
    segmenter = get_segmenter(model, device=device)
    scores, _ = score(segmenter, images)
    table = summarise(scores[~scores["dataset"].str.endswith("@20x")])
    table.loc["monuseg2018_train@20x"] = summarise(scores[scores["dataset"].str.endswith("@20x")]).loc["all"]
    print(
        f"\n{segmenter.name} v{segmenter.version} at {segmenter.mpp} µm/px on {segmenter.device}: "
        f"{scores['seconds'].sum():.1f} s for {len(scores)} images"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return table


def timing(model: str, data: Path) -> None:
    """Seconds per 1024² tile: whole model with 1 and 2 CPU threads, and post-processing alone."""
    from wsi_assets.training.data import at_mpp

    segmenter = get_segmenter(model, device="cpu")
    item = max(labelled_images(data), key=lambda i: i.rgb.size)
    rgb, _ = at_mpp(item, segmenter.mpp)
    tile = np.ascontiguousarray(np.tile(rgb, (3, 3, 1))[:1024, :1024])[None]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        segmenter.segment_batch(tile)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            labels = segmenter.segment_batch(tile)
            runs.append(time.perf_counter() - start)
        print(f"{segmenter.name}: 1024² tile, {threads} CPU thread(s): {min(runs):.2f} s ({int(labels.max())} nuclei)")
    # the segmenter runs a frozen copy that keeps only forward; the file as saved has `maps`
    path = getattr(segmenter, "path", None)
    module = torch.jit.load(str(path), map_location="cpu") if path else None
    if module is not None and hasattr(module, "maps"):
        from wsi_assets.training.postprocess import instances_from_maps

        torch.set_num_threads(1)
        x = torch.from_numpy(tile).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            maps = module.maps(x)
            post = torch.jit.script(instances_from_maps)
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                post(
                    maps[:, :1], maps[:, 1:2], module.fg_threshold, module.seed_threshold, module.grow_iterations, module.min_area
                )
                runs.append(time.perf_counter() - start)
        print(f"post-processing alone (maps -> labels), 1024² tile, 1 CPU thread: {min(runs):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="learned")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-classical", action="store_true")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gate-against", metavar="MODEL", help="hold --model to the accuracy gate against this model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pd.set_option("display.width", 200)
    table = held_out_table(args.model, args.data, args.device)
    if args.gate_against:
        from wsi_assets.training.accuracy_gate import TOLERANCE, gate_failures

        failures = gate_failures(held_out_table(args.gate_against, args.data, args.device), table)
        print(
            f"\naccuracy gate of {args.model} against {args.gate_against} (tolerance {TOLERANCE}): "
            + ("passed" if not failures else f"failed on {len(failures)}:\n  " + "\n  ".join(failures))
        )
    if not args.no_classical:
        held_out_table("classical", args.data, "cpu")
    if args.timing:
        timing(args.model, args.data)


if __name__ == "__main__":
    main()
