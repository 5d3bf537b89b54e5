"""Which model family an image needs: bright-field (dark nuclei on light, H&E) or fluorescence (bright nuclei on dark).

`auto` decides per image: a 2-D array is a fluorescence channel; an RGB image is fluorescence
when its background is dark and unstained and the bright part is sparse:
- background: the median of the brightest channel is below 64 (H&E tiles: 54..245, most
  above 185; fluorescence fields: 1..44);
- unstained: among the pixels at or below that median, green is not the lowest channel by
  more than 4 levels (haematoxylin/eosin leave green lowest, so a dark purple H&E region
  counts as stained; black, grey, blue or green fluorescence backgrounds do not);
- sparse: under 40 % of pixels are brighter than halfway from the median to the 99.5th percentile.
On the shared sets (584 H&E tiles of nuclei_train, 518 DSB fluorescence fields) it is right on
all 1,102 images (`benchmarks/modality_rule.py`). A magenta-pseudocoloured fluorescence image
would read as stained: give `modality: fluorescence` for those.
"""

from __future__ import annotations

import numpy as np

from wsi_assets.core.branch_settings import MODALITIES
from wsi_assets.core.quoting import short_repr

AUTO, BRIGHTFIELD, FLUORESCENCE = MODALITIES

# Where the choice came from, recorded beside it.
SOURCE_GIVEN = "given"
SOURCE_MODEL_CARD = "model card"
SOURCE_2D = "auto: 2-D image"
SOURCE_DARK_BACKGROUND = "auto: bright objects on a dark background"
SOURCE_LIGHT_BACKGROUND = "auto: RGB with a light or stained background"

DARK_BACKGROUND = 64
STAIN_MARGIN = 4.0
SPARSE_BRIGHT = 0.4
_SAMPLE_PX = 1 << 20


def check_modality(value, what: str = "modality") -> str:
    """`value` as one of auto | brightfield | fluorescence (case-insensitive), or a one-line ValueError."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in MODALITIES:
        raise ValueError(f"{what} = {short_repr(value)}: use auto, brightfield or fluorescence")
    return text


def looks_fluorescent(rgb: np.ndarray) -> bool:
    """Whether an RGB image (H,W,3, any numeric dtype on the 0..255 scale) shows bright objects on a dark, unstained background."""
    rgb = np.asarray(rgb)
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / _SAMPLE_PX))))
    sample = rgb[::step, ::step].astype(np.float32)
    if np.issubdtype(rgb.dtype, np.floating) and sample.size and float(sample.max()) <= 1.0:
        sample = sample * 255.0
    value = sample.max(axis=2)
    median = float(np.median(value))
    if median >= DARK_BACKGROUND:
        return False
    top = float(np.percentile(value, 99.5))
    if float((value > (median + top) / 2).mean()) >= SPARSE_BRIGHT:
        return False
    background = sample[value <= median]
    red, green, blue = (float(background[:, i].mean()) for i in range(3))
    return not green < min(red, blue) - STAIN_MARGIN


def decide_modality(image: np.ndarray, modality: str = AUTO, model_modality: str | None = None) -> tuple[str, str]:
    """(brightfield | fluorescence, where the choice came from) for one image.

    A modality given explicitly wins; under `auto`, a model whose card states its modality
    decides (it can only serve that one); else the image does (module docstring).
    """
    modality = check_modality(modality)
    if modality != AUTO:
        return modality, SOURCE_GIVEN
    if model_modality in (BRIGHTFIELD, FLUORESCENCE):
        return model_modality, SOURCE_MODEL_CARD
    image = np.asarray(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return FLUORESCENCE, SOURCE_2D
    if image.ndim == 3 and image.shape[2] == 3 and image.size and looks_fluorescent(image):
        return FLUORESCENCE, SOURCE_DARK_BACKGROUND
    return BRIGHTFIELD, SOURCE_LIGHT_BACKGROUND
