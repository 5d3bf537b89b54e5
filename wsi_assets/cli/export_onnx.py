"""Add `network.onnx` (the U-Net alone, for OpenVINO and ONNX Runtime) to an existing model file;
what it holds and why: `wsi_assets/training/onnx_export.py`.

    python -m wsi_assets.cli.export_onnx MODEL.pt
    (or: wsi-assets-export-onnx MODEL.pt)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsi_assets.training.onnx_export import embed_network_onnx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wsi_assets.cli.export_onnx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="a model file exported by python -m wsi_assets.cli.train_nuclei")
    args = parser.parse_args(argv)
    path = embed_network_onnx(args.model)
    print(f"{path}: network.onnx embedded ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
