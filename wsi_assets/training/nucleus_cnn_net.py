"""The nucleus classifier network (torch) and its ONNX export.

Small on purpose (~0.5 M weights, ~30 M multiply-adds per 64² crop), so a slide's nuclei cost about
a second per thousand on one CPU core, and training fits in CPU-hours. Input: uint8-valued float crops
(N, 4, 64, 64), RGB and the nucleus's own mask (0/255); output: class probabilities.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from wsi_assets.cells.nucleus_cnn import CHANNELS, CROP

OPSET = 17


def _conv(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class NucleusNet(nn.Module):
    """A stride-2 stem (a 3x3 convolution still reads every full-resolution pixel), then stages at
    1/4, 1/8 and 1/16 of two convolutions each, pooled to the classes' logits. Plain convolutions:
    at this depth residuals buy little, and the full-resolution layers dominate the cost."""

    def __init__(self, classes: int = 4, widths: tuple[int, ...] = (24, 48, 96, 160), dropout: float = 0.2):
        super().__init__()
        layers = [_conv(CHANNELS, widths[0], stride=2), _conv(widths[0], widths[0])]
        for before, after in zip(widths[:-1], widths[1:]):
            layers += [_conv(before, after, stride=2), _conv(after, after)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], classes))
        self.widths = tuple(widths)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Logits of float crops valued 0..255 (the mask channel 0 or 255)."""
        return self.head(self.features(crops * (1 / 255.0) - 0.5))


class _Probabilities(nn.Module):
    def __init__(self, net: NucleusNet):
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(crops), dim=1)


def network_onnx(net: NucleusNet, crop: int = CROP) -> bytes:
    """The network with its softmax as ONNX bytes: input `crops` (batch, 4, crop, crop) float 0..255, output `probabilities`."""
    buffer = io.BytesIO()
    # the exporter puts the module it is given back in the mode it found it in: hand it one in eval mode
    training = net.training
    wrapper = _Probabilities(net.cpu()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.zeros(2, CHANNELS, crop, crop),),
            buffer,
            input_names=["crops"],
            output_names=["probabilities"],
            dynamic_axes={"crops": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    net.train(training)
    return buffer.getvalue()
