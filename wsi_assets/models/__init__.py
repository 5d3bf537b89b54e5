"""The nucleus model this project trains and ships, as package data (see README, "The nucleus model")."""

from importlib.resources import files
from pathlib import Path

# A real file in any install (wheel, editable, sdist); its model card is embedded and beside it.
SHIPPED_MODEL_FILE = Path(str(files(__name__) / "nuclei_unet_v4.pt"))
# The fluorescence nucleus model (nuclear channel replicated to 3 channels; card "modality": "fluorescence").
SHIPPED_FLUORESCENCE_MODEL_FILE = Path(str(files(__name__) / "nuclei_fluo_unet_v1.pt"))
