"""Segmenters by name: the default (the shipped learned model), the classical one, or a TorchScript file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from wsi_assets.models import SHIPPED_FLUORESCENCE_MODEL_FILE, SHIPPED_MODEL_FILE
from wsi_assets.segmentation.protocol import Segmenter

CLASSICAL = "classical"
LEARNED = "learned"
DEFAULT = "default"
FLUORESCENCE_DEFAULT = "fluorescence-default"  # the shipped fluorescence model


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
    """A segmenter by name: "default", "classical", "learned" (the shipped model), "fluorescence-default"
    (the shipped fluorescence model: feed it the nuclear channel replicated to RGB), or a TorchScript file path.

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
    if model == FLUORESCENCE_DEFAULT:
        path = SHIPPED_FLUORESCENCE_MODEL_FILE
    else:
        path = SHIPPED_MODEL_FILE if model == LEARNED else Path(model).expanduser().resolve()
    return _cached_model(str(path), device or "auto", float(mpp or 0.0))


@lru_cache(maxsize=4)
def _cached_model(path: str, device: str, mpp: float) -> Segmenter:
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    return TorchScriptSegmenter(path, device=device, mpp=mpp or None)


def fluorescence_model_path(model: str | Path | None = None) -> Path:
    """The TorchScript file of a fluorescence model by name: None, "default" or "fluorescence-default"
    (the shipped one), or a file path."""
    if model is None or model in ("", DEFAULT, FLUORESCENCE_DEFAULT, LEARNED):
        return SHIPPED_FLUORESCENCE_MODEL_FILE
    return Path(model).expanduser().resolve()


def model_modality(model: str | Path | Segmenter | None) -> str | None:
    """The modality a model states ("brightfield" or "fluorescence"), or None when it states none.

    Named models know theirs; a file says it in its card's `modality` (read without torch); a
    file without one serves whichever modality it is used for.
    """
    if model is None or model in ("", DEFAULT, LEARNED):
        return None
    if model == FLUORESCENCE_DEFAULT:
        return "fluorescence"
    if model == CLASSICAL:
        return None
    if isinstance(model, (str, Path)):
        from wsi_assets.segmentation.model_files import read_model_card

        path = Path(model).expanduser()
        card = read_model_card(path) if path.is_file() else {}
    else:
        card = getattr(model, "card", None) or {}
    modality = str(card.get("modality") or "").strip().lower()
    if "fluo" in modality:
        return "fluorescence"
    if modality in ("brightfield", "bright-field", "bright field", "h&e", "he", "histology"):
        return "brightfield"
    return None
