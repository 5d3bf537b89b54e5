"""The nucleus network (a compact U-Net) and the TorchScript module that wraps it.

The network predicts two maps per pixel: a foreground logit and the distance to the nucleus
boundary normalised per nucleus (0 at the edge, 1 at the centre). `NucleiModel` adds the input
scaling and the pure-torch post-processing of `postprocess.py`, so one TorchScript file takes
RGB in and gives instance labels out, on CPU or GPU alike.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from wsi_assets.training.postprocess import instances_from_maps


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNet(nn.Module):
    """U-Net with `len(widths)` levels; input (B,3,H,W) normalised RGB, output (B,2,H,W)."""

    def __init__(self, widths: List[int] = [16, 32, 64, 128, 192], out_channels: int = 2):
        super().__init__()
        self.widths = widths
        self.multiple = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(ConvBlock(cin, w))
            cin = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w_high in zip(widths[::-1][:-1], widths[::-1][1:]):
            self.up.append(nn.ConvTranspose2d(w_low, w_high, 2, stride=2))
            self.merge.append(ConvBlock(2 * w_high, w_high))
        self.head = nn.Conv2d(widths[0], out_channels, 1)


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: List[torch.Tensor] = []
        n_down = len(self.down)
        for i, block in enumerate(self.down):
            x = block(x)
            if i < n_down - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            x = up(x)
            x = merge(torch.cat([x, skips[len(skips) - 1 - i]], dim=1))
        return self.head(x)


class NucleiModel(nn.Module):
    """RGB float (B,3,H,W), 0..255, at the model's µm/px -> instance labels int32 (B,1,H,W)."""

    def __init__(
        self,
        net: UNet,
        fg_threshold: float = 0.5,
        seed_threshold: float = 0.5,
        grow_iterations: int = 24,
        min_area: int = 8,
    ):
        super().__init__()
        self.net = net
        self.multiple = net.multiple
        self.fg_threshold = fg_threshold
        self.seed_threshold = seed_threshold
        self.grow_iterations = grow_iterations
        self.min_area = min_area

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability and normalised distance (B,2,H,W) for 0..255 RGB input."""
        height, width = x.shape[2], x.shape[3]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        x = x / 255.0
        if pad_h or pad_w:
            x = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        out = self.net(x)[:, :, :height, :width]
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:2].clamp(0.0, 1.0)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.maps(x)
        return instances_from_maps(
            maps[:, :1], maps[:, 1:2], self.fg_threshold, self.seed_threshold, self.grow_iterations, self.min_area
        )
