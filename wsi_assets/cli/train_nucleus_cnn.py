"""Training the nucleus classifier network on CoNSeP on the CPU (resumable, logged), or exporting it.

    python -m wsi_assets.cli.train_nucleus_cnn --data ../shared/data/nuclei_train/consep_train --run .train_cellcnn_norm \
        [--steps 8000] [--minutes 120] [--init checkpoints/nucleus_cnn/step00009000.ckpt]
    python -m wsi_assets.cli.train_nucleus_cnn --run .train_cellcnn_norm --export wsi_assets/models/nucleus_classifier_cnn_v2.onnx \
        [--scores diag.json] [--history "…"]
    (or: wsi-assets-train-nucleus-cnn ...)

Sampling, augmentation, checkpoints and the log: wsi_assets.training.nucleus_cnn.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wsi_assets.cells.stain_normalisation import STAIN_NORMALISATION
from wsi_assets.training.nucleus_cnn import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.train_nucleus_cnn", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the folder for the crop cache, checkpoints and log")
    parser.add_argument("--data", type=Path, help="a typed folder in CoNSeP's layout (needed once, to cut the crops)")
    parser.add_argument(
        "--steps", type=int, default=8000, help="total steps of the schedule (give the same on resume, or more to extend it)"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--limit", type=int, help="cut crops from only the first LIMIT images (a smoke run)")
    parser.add_argument("--init", type=Path, help="start a new run from this checkpoint's averaged weights")
    parser.add_argument("--no-stain-normalisation", action="store_true", help="raw pixels (runs cut before stain normalisation)")
    parser.add_argument("--stain-jitter", type=float, default=0.3, help="H&E optical density scaled by 1 ± this in augmentation")
    parser.add_argument("--export", type=Path, help="write the newest checkpoint's network as this ONNX file instead of training")
    parser.add_argument(
        "--scores", type=Path, help="with --export: end-to-end scores (benchmarks/cell_classes_diagnosis.py --json) for the card"
    )
    parser.add_argument("--history", help="with --export: how the run went (resumes, recipe changes), for the card")
    args = parser.parse_args(argv)
    if args.export:
        from wsi_assets.training.nucleus_cnn_export import export_network

        print(json.dumps(export_network(args.run, args.export, args.scores, history=args.history), indent=2, ensure_ascii=False))
        return
    summary = train(
        args.run,
        args.data,
        args.steps,
        args.batch,
        args.lr,
        args.minutes,
        args.checkpoint_minutes,
        args.eval_every,
        limit=args.limit,
        normalisation=None if args.no_stain_normalisation else STAIN_NORMALISATION,
        init=args.init,
        stain_strength=args.stain_jitter,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
