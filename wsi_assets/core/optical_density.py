"""Optical density of 8-bit intensities: OD = log_b(reference / I), the one formula every caller uses.

The callers differ only in parameters, kept so that each computes what it always has:

    stain measurements (QuPath's OD)     log10(255 / I), I clipped to 1..255, float32   (the defaults)
    classical segmenter's lookup table   log10(256 / (I + 1)), float64                  offset=1
    training's stain augmentation        ln(256 / (I + 1)), float32                     offset=1, log=np.log

The +1 offset keeps a black pixel finite without clipping; QuPath clips instead. The base only
scales OD (ln = 2.303 log10), so thresholds stated in one base must stay with it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

WHITE = 255.0  # the intensity of glass (no absorption) in 8-bit images


def optical_density(
    intensity: np.ndarray,
    *,
    offset: float = 0.0,
    lowest: float = 1.0,
    log: Callable[[np.ndarray], np.ndarray] = np.log10,
    dtype: type = np.float32,
) -> np.ndarray:
    """Per value log(reference / clip(I + offset, lowest, reference)), reference = WHITE + offset, computed in `dtype`.

    Written as reference / I rather than -log(I / reference): with the defaults this is QuPath's
    own expression bit for bit; for the offset conventions it equals their -log(I / reference)
    (the same values, to the last bit or one unit in the last place; see the notes in the callers).
    """
    reference = dtype(WHITE + offset)
    values = np.clip(np.asarray(intensity, dtype) + dtype(offset), dtype(lowest), reference)
    return log(reference / values)
