"""The 2-D segmenter a stack's planes go through: the fluorescence model (or the classical floor), at the stack's µm/px."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsi_assets.segmentation.fluorescence import (
    fluorescence_model,
    segment_fluorescence,
)
from wsi_assets.slides.resolution import is_plausible_mpp
from wsi_assets.stacks.nuclei_planes import PlaneSegmenter


@dataclass(frozen=True)
class StackSegmenter:
    segment: PlaneSegmenter
    model: str  # "<name> <version>"
    mpp: float | None  # the stack's X µm/px given to the model; None: estimated per plane from nucleus size


def stack_segmenter(model: str = "default", xy_um: float | None = None, device: str = "auto") -> StackSegmenter:
    """Planes segmented by `model` ("default": the shipped fluorescence model; "classical"; or a TorchScript file)."""
    chosen = fluorescence_model(None if model in ("default", "learned") else model, device)
    mpp = float(xy_um) if is_plausible_mpp(xy_um) else None

    def segment(gray: np.ndarray) -> np.ndarray:
        return segment_fluorescence(gray, mpp=mpp, model=chosen).labels

    return StackSegmenter(segment, f"{chosen.name} {chosen.version}", mpp)
