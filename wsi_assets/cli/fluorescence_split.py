"""Write the fluorescence set's experiment-held-out split (wsi_assets/training/fluorescence_split.csv).

    python -m wsi_assets.cli.fluorescence_split [--data DIR]   (or: wsi-assets-fluorescence-split)

Run once; the split is then fixed so it does not move with a library's clustering.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsi_assets.training.fluorescence_data import default_fluorescence_data, describe_split, write_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.fluorescence_split", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="fluorescence folder (default: <shared data>/nuclei_fluo_train/dsb2018_fluorescence)",
    )
    args = parser.parse_args(argv)
    written = write_split(args.data or default_fluorescence_data())
    print(written.groupby(["experiment", "held_out"]).size().to_string())
    print(describe_split())


if __name__ == "__main__":
    main()
