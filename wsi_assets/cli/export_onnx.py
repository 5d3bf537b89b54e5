"""The network of a model file as ONNX, embedded in that same file for the CPU runtimes.

The TorchScript file stays the one model file (its post-processing and card inside); `network.onnx`
rides along as an extra file holding only the U-Net and its output activations, which OpenVINO or
ONNX Runtime run ~1.4-1.5x faster than torch on a CPU (see `segmentation/cpu_runtimes.py`).
Its outputs: `maps` (foreground probability, distance), then, for U-Nets deep enough to have them,
the decoder's 1/4 and 1/8 levels `embedding_s4` and `embedding_s8` (uncropped: the input is
already a multiple of the U-Net's), which each nucleus's embedding is read from.

    python -m wsi_assets.cli.export_onnx MODEL.pt   # adds network.onnx to an existing file
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
