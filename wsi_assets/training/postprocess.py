"""Network maps to nucleus instances in pure torch (TorchScript-able; same code on CPU and GPU).

1. foreground = probability > `fg_threshold`;
2. seeds = foreground whose normalised distance to the nucleus edge exceeds `seed_threshold`
   (the cores of nuclei, which stay apart even where nuclei touch), grouped into connected
   components;
3. seed ids grow over the foreground by geodesic dilation: each round, unlabelled foreground
   pixels take the largest id among their 3×3 neighbours, so the first seed to arrive wins;
   `grow_iterations` rounds at most (more than the widest rim around a core);
4. foreground left unreached becomes instances of its own (connected components again);
5. instances smaller than `min_area` pixels are dropped, ids renumbered 1..n per image.

Connected components: every pixel starts with its own 1-based index as id; rounds of 3×3
max-propagation inside the mask alternate with pointer jumping (a pixel takes the id now held
by the pixel its id names, which lies in the same component and only grows), so a component
settles in a few rounds instead of one round per pixel of its diameter.
"""

from typing import List

import torch
import torch.nn.functional as F


def max3x3(ids: torch.Tensor) -> torch.Tensor:
    """3×3 maximum of a (B,1,H,W) tensor of non-negative values (zero outside), separably."""
    padded = F.pad(ids, [1, 1, 1, 1])
    rows = torch.maximum(torch.maximum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
    return torch.maximum(torch.maximum(rows[:, :, :, :-2], rows[:, :, :, 1:-1]), rows[:, :, :, 2:])


def components(mask: torch.Tensor, offset: int, max_rounds: int = 64) -> torch.Tensor:
    """Connected components (8-connected) of a (B,1,H,W) 0/1 float mask: ids offset+index+1 or 0."""
    batch, _, height, width = mask.shape
    n = height * width
    index = torch.arange(1, n + 1, device=mask.device, dtype=torch.int64).reshape(1, 1, height, width)
    ids = (index + offset).to(mask.dtype) * mask
    for _ in range(max_rounds):
        grown = max3x3(ids) * mask
        flat = grown.reshape(batch, n)
        pointer = (flat.to(torch.int64) - offset - 1).clamp(0, n - 1)
        jumped = torch.where(flat > 0, torch.gather(flat, 1, pointer), flat).reshape(grown.shape)
        if torch.equal(jumped, ids):
            break
        ids = jumped
    return ids


def grow_into(ids: torch.Tensor, mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Geodesic dilation of `ids` over `mask`: unlabelled mask pixels take a neighbour's id."""
    free = (ids == 0) & (mask > 0)
    for _ in range(iterations):
        grown = torch.where(free, max3x3(ids), ids)
        if torch.equal(grown, ids):
            break
        ids = grown
        free = free & (ids == 0)
    return ids


def instances_from_maps(
    foreground: torch.Tensor,
    distance: torch.Tensor,
    fg_threshold: float = 0.5,
    seed_threshold: float = 0.5,
    grow_iterations: int = 24,
    min_area: int = 8,
) -> torch.Tensor:
    """Instance labels (B,1,H,W) int32 from foreground probability and normalised distance (B,1,H,W)."""
    batch, _, height, width = foreground.shape
    n = height * width
    # ids are pixel indices held in floats: float32 is exact up to 2**24 (two id ranges of a 2896² tile)
    dtype = torch.float32 if 2 * n + 1 < 2**24 else torch.float64
    fg = (foreground > fg_threshold).to(dtype)
    seeds = fg * (distance > seed_threshold).to(dtype)
    ids = grow_into(components(seeds, 0), fg, grow_iterations)
    leftover = fg * (ids == 0).to(dtype)
    if bool(leftover.any()):
        ids = ids + components(leftover, n)
    out = torch.zeros(batch, 1, height, width, dtype=torch.int32, device=foreground.device)
    for b in range(batch):
        flat = ids[b].reshape(-1).to(torch.int64)
        uniq, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True)
        keep = (counts >= min_area) & (uniq > 0)
        new_ids = torch.cumsum(keep.to(torch.int64), 0) * keep.to(torch.int64)
        out[b, 0] = new_ids[inverse].reshape(height, width).to(torch.int32)
    return out


__all__: List[str] = ["instances_from_maps", "components", "grow_into", "max3x3"]
