"""Training settings shared by the command line, the `nuclei_model` asset and the crop sampler.

Light on purpose (no torch): Dagster imports it when it loads the definitions.
"""

from __future__ import annotations

import os
from pathlib import Path

from wsi_assets.core.shared_data import shared_data_dir

STEPS = 3000  # optimiser steps of `BATCH` crops; the shipped v1 was trained this long
BATCH = 16
CROP = 128
MODEL_MPP = 0.5
# Colour augmentation strength: optical densities scaled by up to ±STAIN_JITTER per channel.
# Above BASE_STAIN_JITTER the stain vectors are also mixed (a hue shift between scanners).
BASE_STAIN_JITTER = 0.15
STAIN_JITTER = BASE_STAIN_JITTER
SCALE_JITTER = 1.25  # crops zoomed by up to this factor either way
MODEL_FILE_NAME = "nuclei_unet.pt"
MODEL_DIR_ENV = "WSI_MODEL_DIR"


def default_training_data() -> Path:
    """The labelled nuclei set: <shared data>/nuclei_train (see wsi_assets.core.shared_data)."""
    return shared_data_dir() / "nuclei_train"


def default_model_dir() -> Path:
    """Where trained models go unless told otherwise: $WSI_MODEL_DIR, else $DAGSTER_HOME/models,
    else ~/.wsi-assets/models. Never the package folder or whatever folder a worker runs in."""
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    home = os.environ.get("DAGSTER_HOME")
    return (Path(home) if home else Path.home() / ".wsi-assets").expanduser().resolve() / "models"


def resolve_model_path(path: str | Path | None) -> Path:
    """An output model path: absolute as given, relative ones (and empty) under default_model_dir()."""
    path = Path(path).expanduser() if path else Path(MODEL_FILE_NAME)
    return path if path.is_absolute() else default_model_dir() / path
