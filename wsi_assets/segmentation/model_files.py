"""A model file's card and embedded files, read without torch.

The Dagster processes that only check settings or report errors (daemon, webserver, code
servers, sensors) import this, not torchscript.py: importing torch costs ~3 CPU-s a process.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

CARD_NAME = "model_card.json"
CARD_SUFFIX = ".model_card.json"


class ModelLoadError(ValueError):
    """A model file that is missing, unreadable, or breaks the (B,3,H,W) -> (B,1,H,W) contract."""


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript files are zip archives with a code/ folder; torch.save checkpoints have none."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_embedded_file(path: str | Path, name: str) -> bytes | None:
    """An extra file saved inside a TorchScript archive (e.g. network.onnx), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.namelist():
                if entry.endswith("/extra/" + name):
                    return archive.read(entry)
    except (zipfile.BadZipFile, OSError):
        pass
    return None


def read_model_card(path: str | Path) -> dict:
    """The model card embedded in a TorchScript file, or its sidecar, or {}."""
    path = Path(path)
    embedded = read_embedded_file(path, CARD_NAME)
    if embedded is not None:
        try:
            return json.loads(embedded)
        except json.JSONDecodeError:
            pass
    sidecar = path.with_name(path.stem + CARD_SUFFIX)
    if sidecar.exists():
        try:
            return json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"model card {sidecar} is not valid JSON: {exc}") from None
    return {}
