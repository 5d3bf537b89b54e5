"""Held-out scores of the fluorescence nucleus model beside the classical floor (Otsu + watershed).

The held-out split is whole experiments of the DSB 2018 fluorescence set
(wsi_assets/training/fluorescence_split.csv; see wsi_assets/training/fluorescence_data.py).
Scores: pooled F1@0.5 over all nuclei, per-image means of AJI and PQ, each image scored at its
own size. Rows say where the nucleus size comes from, as the pixel size of these images is
unknown:
- true: each image's median labelled nucleus (as a caller who knows µm/px gets);
- estimated: the classical estimate from the Otsu foreground (`estimate_nucleus_diameter`);
- two-pass: the model at the estimated size, then again at the size of its own nuclei;
- none: no zoom at all (shows why the size matters).

    python benchmarks/fluorescence_validation.py [--model PATH] [--json OUT] [--no-classical] [--scales true,two-pass] [--record]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from wsi_assets.segmentation.classical_fluorescence import estimate_nucleus_diameter, segment_fluorescence_classical
from wsi_assets.segmentation.model_files import read_model_card
from wsi_assets.training.fluorescence_data import default_fluorescence_data, describe_split, load_fluorescence_images
from wsi_assets.training.fluorescence_eval import by_experiment, model_segmenter, score_images, summary

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "wsi_assets" / "models" / "nuclei_fluo_unet_v1.pt"


def row(name: str, result: dict) -> str:
    return (
        f"{name:<34} {result['images']:>4} {result['true']:>6} {result['pred']:>6} {result['precision']:.3f} "
        f"{result['recall']:.3f} {result['f1']:.3f} {result['aji']:.3f} {result['pq']:.3f} {result['seconds']:7.1f}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--no-classical", action="store_true")
    parser.add_argument(
        "--scales", default="true,estimated,two-pass,none", help="comma-separated nucleus-size sources for the model"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="write the figures into the model's card (held_out_scores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = load_fluorescence_images(args.data or default_fluorescence_data(), held_out=True)
    results: dict = {"split": describe_split(), "threads": args.threads, "rows": {}, "by_experiment": {}}
    print(f"{'segmenter (nucleus size from)':<34} {'imgs':>4} {'true':>6} {'pred':>6} prec  recall F1@.5 AJI   PQ    seconds")
    if not args.no_classical:
        for name, diameter in (("classical (true)", lambda i: i.diameter), ("classical (estimated)", lambda i: None)):
            scores = score_images(lambda item, d=diameter: segment_fluorescence_classical(item.gray, d(item)), items)
            results["rows"][name] = summary(scores)
            results["by_experiment"][name] = by_experiment(scores)
            print(row(name, results["rows"][name]), flush=True)
        ratios = [(estimate_nucleus_diameter(i.gray) or 0) / i.diameter for i in items]
        results["diameter_estimate_ratio_median"] = float(sorted(ratios)[len(ratios) // 2])
    if args.model.exists():
        card = read_model_card(args.model)
        module = torch.jit.load(str(args.model), map_location="cpu").eval()
        reference = float(card["nucleus_scale"]["reference_diameter_px"])
        results["model"] = {"file": str(args.model), "name": card.get("name"), "version": card.get("version")}
        for scale in [s for s in args.scales.split(",") if s]:
            name = f"model (scale {scale})"
            scores = score_images(model_segmenter(module, reference, scale), items)
            results["rows"][name] = summary(scores)
            results["by_experiment"][name] = by_experiment(scores)
            print(row(name, results["rows"][name]), flush=True)
    else:
        print(f"no model at {args.model}: classical floor only", file=sys.stderr)
    for name, experiments in results["by_experiment"].items():
        print(f"\n{name} by held-out experiment:")
        for experiment, result in experiments.items():
            print(row(f"  {experiment}", result))
    if args.record and "model" in results:
        from wsi_assets.training.fluorescence_train import update_card

        keep = ("images", "true", "pred", "precision", "recall", "f1", "aji", "pq")
        scores = {
            name: {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items() if k in keep}
            for name, result in results["rows"].items()
        }
        scores["by_experiment (model, scale true)"] = {
            experiment: {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items() if k in keep}
            for experiment, result in results["by_experiment"].get("model (scale true)", {}).items()
        }
        update_card(
            args.model,
            {
                "held_out_scores": scores,
                "metrics_note": "F1@0.5 pooled over nuclei; AJI and PQ "
                "per-image means; each image scored at its own size (python benchmarks/fluorescence_validation.py --record)",
            },
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
