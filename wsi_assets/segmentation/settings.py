"""Segmentation settings checked before any work: each bad value is one line naming the setting and the fix.

The same checks back the pydantic validators of the Dagster resource (so a bad run config is
refused when the run's resources are set up) and `validate_segmentation_settings`, which any
caller (tests, the command line, a launch path) can use without Dagster.
"""

from __future__ import annotations

import re
from pathlib import Path

from wsi_assets.core.quoting import short_repr
from wsi_assets.slides.resolution import PLAUSIBLE_MPP, is_plausible_mpp

TILE_CORE_RANGE = (64, 8192)
TILE_MARGIN_RANGE = (0, 1024)
BATCH_RANGE = (1, 256)
THREADS_RANGE = (1, 64)
NAMED_MODELS = ("", "default", "classical", "learned", "fluorescence-default")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class ConfigError(ValueError):
    """A setting the user gave cannot work; the message names it and says what to give instead."""


def _int_in(name: str, value, bounds: tuple[int, int], meaning: str) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"segmentation setting {name} = {short_repr(value)}: must be a whole number from {low} to {high} ({meaning})"
        )
    return value


def check_tile_core_px(value) -> int:
    return _int_in("tile_core_px", value, TILE_CORE_RANGE, "model pixels each tile owns")


def check_tile_margin_px(value) -> int:
    return _int_in("tile_margin_px", value, TILE_MARGIN_RANGE, "overlap on each tile side, wider than a nucleus")


def check_batch_size(value) -> int:
    return _int_in("batch_size", value, BATCH_RANGE, "tiles per segmenter call")


def check_read_threads(value) -> int:
    return _int_in("read_threads", value, THREADS_RANGE, "threads reading tiles ahead")


def plausible_mpp(value, what: str) -> float:
    """`value` as µm/px, or ConfigError saying `what` was wrong (e.g. 'segmentation setting default_mpp')."""
    low, high = PLAUSIBLE_MPP
    if not is_plausible_mpp(value):
        raise ConfigError(
            f"{what} = {short_repr(value)}: µm/px must be a number from {low} to {high} (e.g. 0.25 for 40x, 0.5 for 20x)"
        )
    return float(value)


def check_default_mpp(value) -> float:
    return plausible_mpp(value, "segmentation setting default_mpp")


def check_model_mpp(value) -> float:
    """0 means "read it from the model card"; anything else must be a plausible µm/px."""
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0:
        return 0.0
    return plausible_mpp(value, "segmentation setting model_mpp")


def check_device_name(value) -> str:
    if not isinstance(value, str) or not _DEVICE.match(value.strip() or "auto"):
        raise ConfigError(f"segmentation setting device = {short_repr(value)}: use auto, cpu, cuda or cuda:N (N = GPU number)")
    return value.strip() or "auto"


def check_modality(value) -> str:
    """auto | brightfield | fluorescence (case-insensitive)."""
    from wsi_assets.core.branch_settings import MODALITIES

    text = value.strip().lower() if isinstance(value, str) else None
    if text not in MODALITIES:
        raise ConfigError(f"segmentation setting modality = {short_repr(value)}: use auto, brightfield or fluorescence")
    return text


def check_device_available(device: str) -> None:
    """A cuda device must exist on this machine (checked when a run starts, where it will run)."""
    device = check_device_name(device)
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        seen = f"{count} GPU(s)" if count else "no CUDA GPU"
        raise ConfigError(
            f"segmentation setting device = {short_repr(device)}, but torch sees {seen} here: use auto or cpu, or run on a GPU worker"
        )


def check_model(model: str, model_mpp: float) -> None:
    """A model given as a file must exist, be TorchScript, and say its µm/px (card or model_mpp)."""
    if model in NAMED_MODELS:
        return
    from wsi_assets.segmentation.model_files import (
        CARD_SUFFIX,
        ModelLoadError,
        is_torchscript_archive,
        read_model_card,
    )

    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"segmentation setting model = {short_repr(model, 240)}: no such file; give a TorchScript file path, or default, classical or learned"
        )
    if not is_torchscript_archive(path):
        raise ConfigError(
            f"segmentation setting model: {path.name} is not a TorchScript model (a state_dict checkpoint or another file?); "
            "save it with torch.jit.save(torch.jit.script(model), path) and give that file"
        )
    try:
        card = read_model_card(path)
    except ModelLoadError as error:
        raise ConfigError(str(error)) from None
    if not model_mpp and not card.get("mpp") and not (card.get("input") or {}).get("resolution_um_per_px"):
        raise ConfigError(
            f"model {path.name} does not say its µm/px: set segmentation model_mpp, "
            f'or write {path.stem + CARD_SUFFIX} with {{"mpp": 0.5}} beside it'
        )


def validate_segmentation_settings(
    tile_core_px: int = 1024,
    tile_margin_px: int = 64,
    batch_size: int = 4,
    read_threads: int = 2,
    default_mpp: float = 0.25,
    model: str = "default",
    model_mpp: float = 0.0,
    device: str = "auto",
    modality: str = "auto",
) -> None:
    """Every setting checked, the cheap ones first; raises ConfigError with one line for the first bad one."""
    check_tile_core_px(tile_core_px)
    check_tile_margin_px(tile_margin_px)
    check_batch_size(batch_size)
    check_read_threads(read_threads)
    check_default_mpp(default_mpp)
    check_model_mpp(model_mpp)
    check_device_name(device)
    check_modality(modality)
    check_model(model, model_mpp)
    check_device_available(device)
