"""Train the nucleus model from a labelled folder and export it as TorchScript with a model card.

    python -m wsi_assets.cli.train_nuclei --out wsi_assets/models/nuclei_unet.pt \
        [--data DIR] [--commercial-only] [--epochs N | --steps N] [--device auto] [--threads 1]
    (or: wsi-assets-train-nuclei ...)

Everything is seeded; on CPU with one thread two runs give the same weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsi_assets.training import defaults
from wsi_assets.training.data import parse_dataset_shares
from wsi_assets.training.distill import parse_widths
from wsi_assets.training.train import TrainConfig, initial_widths, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.train_nuclei", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="labelled folder (default: $WSI_SHARED_DATA/nuclei_train or ../shared/data/nuclei_train)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--commercial-only", action="store_true", help="train only on images whose licence allows commercial use")
    parser.add_argument("--epochs", type=float, default=0.0, help="passes over the training pixels (overrides --steps)")
    parser.add_argument("--steps", type=int, default=defaults.STEPS)
    parser.add_argument("--batch", type=int, default=defaults.BATCH)
    parser.add_argument("--crop", type=int, default=defaults.CROP, help="training crop side in pixels at --mpp")
    parser.add_argument("--mpp", type=float, default=defaults.MODEL_MPP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--version", default="")
    parser.add_argument("--snapshot-every", type=int, default=0, help="also export a snapshot every N steps")
    parser.add_argument("--init", type=Path, help="start from this exported model's weights (fine-tune / continue)")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument(
        "--stain-jitter",
        type=float,
        default=defaults.STAIN_JITTER,
        help=f"colour augmentation strength ({defaults.BASE_STAIN_JITTER} as the first models); above that it also shifts hue",
    )
    parser.add_argument("--scale-jitter", type=float, default=defaults.SCALE_JITTER, help="zoom crops by up to this factor")
    parser.add_argument(
        "--dataset-share",
        action="append",
        default=[],
        metavar="DATASET=FRACTION",
        help="draw this fraction of the crops from one dataset (repeatable); the others share the rest by area",
    )
    parser.add_argument(
        "--widths",
        help="channels per U-Net level, e.g. 8,16,32,64,96 for a half-width student of --init "
        f"(default: --init's, else {','.join(map(str, TrainConfig().widths))})",
    )
    parser.add_argument("--teacher", type=Path, help="also teach the network this model file's maps (distillation)")
    parser.add_argument("--distill-weight", type=float, default=TrainConfig.distill_weight)
    args = parser.parse_args(argv)
    try:
        shares = parse_dataset_shares(args.dataset_share)
        widths = parse_widths(args.widths) if args.widths else initial_widths(args.init)
    except ValueError as error:
        parser.error(str(error))
    config = TrainConfig(
        data=args.data or defaults.default_training_data(),
        out=args.out,
        commercial_only=args.commercial_only,
        epochs=args.epochs,
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        mpp=args.mpp,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        version=args.version,
        snapshot_every=args.snapshot_every,
        init=args.init,
        lr=args.lr,
        stain_jitter=args.stain_jitter,
        scale_jitter=args.scale_jitter,
        dataset_shares=shares,
        widths=widths,
        teacher=args.teacher,
        distill_weight=args.distill_weight,
    )
    train(config, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
