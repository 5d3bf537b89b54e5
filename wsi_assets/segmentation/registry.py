"""Segmenters by name: the default (the shipped learned model), the classical one, or a TorchScript file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.segmentation.protocol import Segmenter

CLASSICAL = "classical"
LEARNED = "learned"
DEFAULT = "default"


@lru_cache(maxsize=1)
def classical_segmenter() -> Segmenter:
    """The classical segmenter with default settings (shared instance, and so one thread pool)."""
    from wsi_assets.segmentation.classical import ClassicalSegmenter

    return ClassicalSegmenter()


def default_segmenter(device: str = "auto") -> Segmenter:
    """The segmenter used when none is configured: the shipped learned model (shared instance).

    It beats the classical segmenter on every held-out set (README, "The nucleus model"), and on
    a CPU its network runs in OpenVINO or ONNX Runtime where installed (`cpu_runtimes.py`).
    """
    return _cached_model(str(SHIPPED_MODEL_FILE), device or "auto", 0.0)


def get_segmenter(model: str | Path | Segmenter | None = DEFAULT, device: str = "auto", mpp: float = 0.0) -> Segmenter:
    """A segmenter by name: "default", "classical", "learned" (the shipped model), or a TorchScript file path.

    `mpp` is the µm/px of a model file that carries no model card (0 = take it from the card).
    Loaded models are cached per (path, device, mpp). Raises `ModelLoadError` (a ValueError)
    with a one-line reason for a missing, corrupt or contract-breaking file.
    """
    if model is None or model == "" or model == DEFAULT:
        return default_segmenter(device)
    if not isinstance(model, (str, Path)):
        return model
    if model == CLASSICAL:
        return classical_segmenter()
    path = SHIPPED_MODEL_FILE if model == LEARNED else Path(model).expanduser().resolve()
    return _cached_model(str(path), device or "auto", float(mpp or 0.0))


@lru_cache(maxsize=4)
def _cached_model(path: str, device: str, mpp: float) -> Segmenter:
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    return TorchScriptSegmenter(path, device=device, mpp=mpp or None)
