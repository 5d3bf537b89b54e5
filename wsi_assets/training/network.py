"""The nucleus network (a compact U-Net) and the TorchScript module that wraps it.

The network predicts two maps per pixel: a foreground logit and the distance to the nucleus
boundary normalised per nucleus (0 at the edge, 1 at the centre). `NucleiModel` adds the input
scaling and the pure-torch post-processing of `postprocess.py`, so one TorchScript file takes
RGB in and gives instance labels out, on CPU or GPU alike. Its exported method
`labels_and_embedding_maps` also gives the decoder's 1/4 and 1/8 resolution levels, which each
nucleus's embedding is read from (`cells/embeddings.py`).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from wsi_assets.training.postprocess import instances_from_maps

# The decoder levels a nucleus embedding is read from (`labels_and_embedding_maps` spells them out,
# as TorchScript compiles literals, not module globals).
EMBEDDING_STRIDES = (4, 8)


def activated_maps(out: torch.Tensor) -> torch.Tensor:
    """The U-Net's head output as the maps post-processing reads: foreground probability, distance clamped to 0..1."""
    return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:2].clamp(0.0, 1.0)], dim=1)


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

    def decoder_strides(self) -> List[int]:
        """The stride of each decoder level (the output of `merge[i]`), coarsest first: 8, 4, 2, 1 for 5 widths."""
        return [self.multiple >> (i + 1) for i in range(len(self.merge))]

    def forward_with_levels(self, x: torch.Tensor, strides: List[int]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """The head output and the decoder levels at `strides`, in the order asked.

        Only the levels asked for are kept, so `forward` (none asked) frees each level as before.
        """
        skips: List[torch.Tensor] = []
        kept: Dict[int, torch.Tensor] = {}
        level_strides = self.decoder_strides()
        n_down = len(self.down)
        for i, block in enumerate(self.down):
            x = block(x)
            if i < n_down - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            x = up(x)
            x = merge(torch.cat([x, skips[len(skips) - 1 - i]], dim=1))
            if level_strides[i] in strides:
                kept[level_strides[i]] = x
        return self.head(x), [kept[s] for s in strides]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_levels(x, [])[0]


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

    def _network_input(self, x: torch.Tensor) -> torch.Tensor:
        """0..255 RGB scaled to 0..1 and padded (edge pixels repeated) to a multiple of the U-Net's."""
        height, width = x.shape[2], x.shape[3]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        x = x / 255.0
        if pad_h or pad_w:
            x = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        return x

    def _activated(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The head output cropped to the input's size: foreground probability, distance clamped to 0..1."""
        return activated_maps(out[:, :, :height, :width])

    def _labels(self, maps: torch.Tensor) -> torch.Tensor:
        return instances_from_maps(
            maps[:, :1], maps[:, 1:2], self.fg_threshold, self.seed_threshold, self.grow_iterations, self.min_area
        )

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability and normalised distance (B,2,H,W) for 0..255 RGB input."""
        return self._activated(self.net(self._network_input(x)), x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._labels(self.maps(x))

    @torch.jit.export
    def labels_and_embedding_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The labels `forward` gives, and the decoder's 1/4 and 1/8 levels (B,C,ceil(H/s),ceil(W/s)).

        The levels are cropped like the maps: the padding added to reach the U-Net's multiple goes.
        """
        height, width = x.shape[2], x.shape[3]
        out, levels = self.net.forward_with_levels(self._network_input(x), [4, 8])
        quarter = levels[0][:, :, : (height + 3) // 4, : (width + 3) // 4]
        eighth = levels[1][:, :, : (height + 7) // 8, : (width + 7) // 8]
        return self._labels(self._activated(out, height, width)), quarter, eighth
