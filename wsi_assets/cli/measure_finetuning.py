"""Time finetune_from_reviews on a synthetic branch whose drawn truth is the review (a few hundred cells).

    python -m wsi_assets.cli.measure_finetuning [--steps 150] [--threads 1] [--width 1024 --height 768]
    (or: wsi-assets-measure-finetuning ...)

Starts from the shipped nucleus model and classifier, mixes in the base data where ../shared is
present, and prints the seconds of each part and the before/after figures. Everything is written
to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse

from wsi_assets.finetuning.measure import time_finetuning
from wsi_assets.finetuning.nucleus_finetune import FineTuneSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.measure_finetuning", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=FineTuneSettings.steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    args = parser.parse_args(argv)
    time_finetuning(args.steps, args.threads, args.width, args.height, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
