"""Training and evaluation of the project's nucleus model (see README, "The nucleus model")."""

from pathlib import Path

# ../shared/data/nuclei_train beside the repository checkout
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nuclei_train"
