"""The network of a model file as ONNX, embedded in that same file for the CPU runtimes.

The TorchScript file stays the one model file (its post-processing and card inside); `network.onnx`
rides along as an extra file holding only the U-Net and its output activations, which OpenVINO or
ONNX Runtime run ~1.4-1.5x faster than torch on a CPU (see `segmentation/cpu_runtimes.py`).

    python -m wsi_assets.training.onnx_export MODEL.pt   # adds network.onnx to an existing file
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from wsi_assets.segmentation.cpu_runtimes import NETWORK_ONNX as ONNX_NAME
from wsi_assets.training.network import UNet

OPSET = 17


class _Maps(nn.Module):
    """RGB 0..255 (B,3,H,W), H and W multiples of the U-Net's -> foreground probability, distance."""

    def __init__(self, net: UNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x / 255.0)
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:2].clamp(0.0, 1.0)], dim=1)


def network_onnx(net: UNet) -> bytes:
    """The U-Net with its output activations as ONNX bytes (any batch, height and width)."""
    buffer = io.BytesIO()
    probe = torch.zeros(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Maps(net.cpu().eval()), (probe,), buffer, input_names=["rgb"], output_names=["maps"],
            dynamic_axes={"rgb": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "height", 3: "width"}},
            opset_version=OPSET, dynamo=False,
        )
    return buffer.getvalue()


def embed_network_onnx(model_file: Path) -> Path:
    """Rewrite a model file this project exported with its network as ONNX inside (atomically)."""
    from wsi_assets.segmentation.torchscript import CARD_NAME, CARD_SUFFIX, read_model_card
    from wsi_assets.training.train import load_trained_net

    model_file = Path(model_file)
    card = read_model_card(model_file)
    net = load_trained_net(model_file, card)
    card = {**card, "cpu_runtimes": {"network": ONNX_NAME, "opset": OPSET}}
    files = {CARD_NAME: json.dumps(card, indent=2, default=str), ONNX_NAME: network_onnx(net)}
    module = torch.jit.load(str(model_file), map_location="cpu")
    temporary = model_file.with_name(model_file.name + ".tmp")
    torch.jit.save(module, str(temporary), _extra_files=files)
    temporary.replace(model_file)
    sidecar = model_file.with_name(model_file.stem + CARD_SUFFIX)
    if sidecar.exists():
        sidecar.write_text(files[CARD_NAME])
    return model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model file exported by wsi_assets.training.train")
    args = parser.parse_args()
    path = embed_network_onnx(args.model)
    print(f"{path}: network.onnx embedded ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
