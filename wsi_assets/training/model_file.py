"""What training and the ONNX export share about a model file this project exported: its U-Net."""

from __future__ import annotations

from pathlib import Path

import torch

from wsi_assets.training.network import UNet

# The shipped model's widths; a card without "widths" was trained with them.
STANDARD_WIDTHS = (16, 32, 64, 128, 192)


def load_trained_net(model_file: Path, card: dict | None = None) -> UNet:
    """The U-Net inside a model file this project exported (`card`: its model card, if already read)."""
    from wsi_assets.segmentation.torchscript import read_model_card

    card = read_model_card(model_file) if card is None else card
    net = UNet(list(card.get("widths") or STANDARD_WIDTHS))
    net.load_state_dict(torch.jit.load(str(model_file), map_location="cpu").net.state_dict())
    return net
