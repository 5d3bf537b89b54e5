"""Train the fluorescence nucleus model, resumably, and export it (how training stops, resumes and
validates: `wsi_assets/training/fluorescence_train.py`).

    python -m wsi_assets.cli.train_fluorescence --checkpoints DIR --hours H [--out MODEL.pt]
    python -m wsi_assets.cli.train_fluorescence --checkpoints DIR --export-only --out MODEL.pt
    (or: wsi-assets-train-fluorescence ...)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsi_assets.training.fluorescence_data import (
    REFERENCE_DIAMETER_PX,
    SCALE_RANGE,
    SPLIT_FILE,
    default_fluorescence_data,
    load_fluorescence_images,
)
from wsi_assets.training.fluorescence_train import WIDTHS, export_from_checkpoints, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wsi_assets.cli.train_fluorescence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="fluorescence folder (default: <shared data>/nuclei_fluo_train/dsb2018_fluorescence)",
    )
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoint folder; training resumes from its newest")
    parser.add_argument("--out", type=Path, help="also export the best network here when training stops")
    parser.add_argument("--export-only", action="store_true", help="export --out from the checkpoints and stop")
    parser.add_argument("--which", choices=("best", "newest"), default="best")
    parser.add_argument("--version", default="")
    parser.add_argument(
        "--tune-per-experiment",
        type=int,
        default=3,
        help="on export, choose the post-processing thresholds on this many training images per experiment (0 = defaults)",
    )
    parser.add_argument(
        "--hours", type=float, default=0.0, help="training-time budget in all, across restarts (0 = --steps only)"
    )
    parser.add_argument("--steps", type=int, default=0, help="stop at this step (0 = --hours only)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], default=WIDTHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-diameter", type=float, default=REFERENCE_DIAMETER_PX)
    parser.add_argument("--scale-range", type=float, nargs=2, default=list(SCALE_RANGE))
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--validate-minutes", type=float, default=15.0, help="0 = never")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--split", type=Path, default=SPLIT_FILE, help="split CSV (stem, experiment, held_out)")
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=0,
        help="end this run at step N as if killed there (the schedule still runs to --steps/--hours)",
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images of each side (tests)")
    parser.add_argument("--val-limit", type=int, default=0, help="score only the first N held-out images during training")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.data = args.data or default_fluorescence_data()
    if not args.export_only and not (args.hours or args.steps):
        parser.error("give --hours or --steps (how long to train in all)")
    if args.export_only and not args.out:
        parser.error("--export-only needs --out")
    if not args.export_only:
        train(args, log=lambda m: print(m, flush=True))
    if args.out:
        tune_images = None
        if args.tune_per_experiment:
            tune_images = load_fluorescence_images(args.data, held_out=False, limit=args.limit, split_file=args.split)
        path = export_from_checkpoints(
            args.checkpoints, args.out, args.which, args.version, tune_images=tune_images, per_experiment=args.tune_per_experiment
        )
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
