"""A model whose weights are a mix of a start model's and of fine-tuned copies of it (WiSE-FT).

    python -m wsi_assets.cli.average_weights --start v3.pt --finetuned a.pt b.pt \
        --alpha 0.35 --out v4.pt --version 4 [--data ../shared/data/nuclei_train]
    (or: wsi-assets-average-weights ...)

Fine-tuning on a new dataset (CoNSeP) gains there but loses a point or two on the sets the start
model already did well on; moving only part of the way from the start weights towards the mean
of the fine-tuned ones keeps most of the gain and little of the loss (Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022). The post-processing thresholds are the first
fine-tuned model's; the card records the mix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsi_assets.training.weight_average import write_average


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.average_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=Path, required=True, help="the model the fine-tuned ones started from")
    parser.add_argument("--finetuned", type=Path, nargs="+", required=True)
    parser.add_argument("--alpha", type=float, required=True, help="0 = the start model, 1 = the mean of the fine-tuned ones")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default="")
    parser.add_argument(
        "--data", type=Path, default=None, help="labelled folder whose held-out split scores the new model into its card"
    )
    args = parser.parse_args(argv)
    try:
        write_average(args.start, args.finetuned, args.alpha, args.out, args.version, args.data)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
