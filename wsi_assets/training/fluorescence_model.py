"""The fluorescence nucleus model: the U-Net and post-processing of `network.py`, with the
intensity normalisation inside the TorchScript module.

Input: (B,3,H,W) float, the nuclear channel in any scale (uint8, uint16, float counts...),
replicated to 3 channels (an RGB fluorescence image works too: the channels are averaged).
Each image's 1st and 99.8th percentiles map to 0 and 1, so the caller never needs to know how
the model was trained. Output: int32 instance labels (B,1,H,W), as the H&E model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsi_assets.training.network import NucleiModel, UNet


def percentile_normalise(gray: torch.Tensor, low_q: float, high_q: float, samples: int = 1048576) -> torch.Tensor:
    """(B,1,H,W) float: per image, the `low_q` and `high_q` quantiles (nearest rank) map to 0 and 1;
    values are clamped to -1..2 so a hot pixel cannot dominate.

    The quantiles are read from at most `samples` evenly strided pixels: sorting a 4096² field
    whole would cost more than the network's first layer."""
    flat = gray.flatten(1)
    n = flat.shape[1]
    step = max(1, (n + samples - 1) // samples)
    ordered = torch.sort(flat[:, ::step], dim=1).values
    m = ordered.shape[1]
    low = ordered[:, int(round(low_q * (m - 1)))].reshape(-1, 1, 1, 1)
    high = ordered[:, int(round(high_q * (m - 1)))].reshape(-1, 1, 1, 1)
    # a flat image (nothing above background) must not have its noise stretched to full range
    span = torch.maximum(high - low, 1e-6 + 1e-3 * high.abs())
    return ((gray - low) / span).clamp(-1.0, 2.0)


class FluorescenceNucleiModel(NucleiModel):
    """Nuclear channel (B,3,H,W) float, any scale, nuclei `reference_diameter` px across -> labels (B,1,H,W)."""

    def __init__(self, net: UNet, low_q: float = 0.01, high_q: float = 0.998, **post):
        super().__init__(net, **post)
        self.low_q = low_q
        self.high_q = high_q

    def _network_input(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        y = percentile_normalise(x.float().mean(dim=1, keepdim=True), self.low_q, self.high_q)
        if pad_h or pad_w:
            y = F.pad(y, [0, pad_w, 0, pad_h], mode="replicate")
        return y.expand(-1, 3, -1, -1).contiguous()
