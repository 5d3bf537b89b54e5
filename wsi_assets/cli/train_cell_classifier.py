"""Training the cell-type classifier from typed nuclei (CoNSeP's layout), held out by whole tile.

    python -m wsi_assets.cli.train_cell_classifier --data ../shared/data/nuclei_train/consep_train \
        --out wsi_assets/models/cell_classifier_v3.npz [--outlines learned|classical|annotated] [--measurements-only]
    (or: wsi-assets-train-cell-classifier ...)

The folder layout and what is measured: wsi_assets.training.cell_classifier_training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wsi_assets.training.cell_classifier_training import train_cell_classifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.train_cell_classifier", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trees", type=int, default=60)
    parser.add_argument("--outlines", default="learned", help='a segmenter name ("learned", "classical") or "annotated"')
    parser.add_argument(
        "--measurements-only",
        action="store_true",
        help="leave the segmenter's nucleus embedding out (a classifier for any segmenter)",
    )
    args = parser.parse_args(argv)
    card = train_cell_classifier(
        args.data, args.out, trees=args.trees, outlines=args.outlines, with_embedding=not args.measurements_only
    )
    print(json.dumps(card, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
