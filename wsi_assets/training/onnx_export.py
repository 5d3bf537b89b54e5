"""The network of a model file as ONNX, embedded in that same file for the CPU runtimes.

The TorchScript file stays the one model file (its post-processing and card inside); `network.onnx`
rides along as an extra file holding only the U-Net and its output activations, which OpenVINO or
ONNX Runtime run ~1.4-1.5x faster than torch on a CPU (see `segmentation/cpu_runtimes.py`).
Its outputs: `maps` (foreground probability, distance), then, for U-Nets deep enough to have them,
the decoder's 1/4 and 1/8 levels `embedding_s4` and `embedding_s8` (uncropped: the input is
already a multiple of the U-Net's), which each nucleus's embedding is read from.

    python -m wsi_assets.cli.export_onnx MODEL.pt   # adds network.onnx to an existing file
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from wsi_assets.segmentation.cpu_runtimes import NETWORK_ONNX as ONNX_NAME
from wsi_assets.training.network import EMBEDDING_STRIDES, UNet, activated_maps

OPSET = 17
EMBEDDING_OUTPUTS = tuple(f"embedding_s{s}" for s in EMBEDDING_STRIDES)


def has_embedding_levels(net: UNet) -> bool:
    """A U-Net of 5 or more levels (widths) has decoder levels at strides 4 and 8; the tests' tiny ones do not."""
    return set(EMBEDDING_STRIDES) <= set(net.decoder_strides())


def card_embedding(net: UNet) -> dict:
    """The model card's "embedding": the levels' strides, channels and ONNX output names."""
    # the decoder level at stride 2**k has the width of the encoder level it merges with, widths[k]
    channels = [int(net.widths[s.bit_length() - 1]) for s in EMBEDDING_STRIDES]
    return {"strides": list(EMBEDDING_STRIDES), "channels": channels, "outputs": list(EMBEDDING_OUTPUTS)}


class _Maps(nn.Module):
    """RGB 0..255 (B,3,H,W), H and W multiples of the U-Net's -> foreground probability and distance,
    then the embedding levels when `with_embedding`."""

    def __init__(self, net: UNet, with_embedding: bool):
        super().__init__()
        self.net = net
        self.strides = list(EMBEDDING_STRIDES) if with_embedding else []

    def forward(self, x: torch.Tensor):
        out, levels = self.net.forward_with_levels(x / 255.0, self.strides)
        return (activated_maps(out), *levels)


def network_onnx(net: UNet, with_embedding: bool = True) -> bytes:
    """The U-Net with its output activations as ONNX bytes (any batch, height and width); the
    embedding levels as two more outputs when asked for and the U-Net has them."""
    with_embedding = with_embedding and has_embedding_levels(net)
    outputs = ["maps", *(EMBEDDING_OUTPUTS if with_embedding else ())]
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ["rgb", *outputs]}
    buffer = io.BytesIO()
    probe = torch.zeros(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Maps(net.cpu().eval(), with_embedding),
            (probe,),
            buffer,
            input_names=["rgb"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def embed_network_onnx(model_file: Path) -> Path:
    """Rewrite a model file this project exported with its network as ONNX inside (atomically)."""
    from wsi_assets.segmentation.torchscript import CARD_NAME, CARD_SUFFIX, read_model_card
    from wsi_assets.training.model_file import load_trained_net

    model_file = Path(model_file)
    card = read_model_card(model_file)
    net = load_trained_net(model_file, card)
    card = {**card, "cpu_runtimes": {"network": ONNX_NAME, "opset": OPSET}}
    if has_embedding_levels(net):
        card["embedding"] = card_embedding(net)
    files = {CARD_NAME: json.dumps(card, indent=2, default=str), ONNX_NAME: network_onnx(net)}
    module = torch.jit.load(str(model_file), map_location="cpu")
    temporary = model_file.with_name(model_file.name + ".tmp")
    torch.jit.save(module, str(temporary), _extra_files=files)
    temporary.replace(model_file)
    sidecar = model_file.with_name(model_file.stem + CARD_SUFFIX)
    if sidecar.exists():
        sidecar.write_text(files[CARD_NAME])
    return model_file
