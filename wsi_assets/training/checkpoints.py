"""Resumable training: numbered checkpoints in a folder, written atomically, the newest read back.

A checkpoint is whatever state dict the trainer hands over (network, optimiser, sampler's random
state, step, log); `torch.save` writes it under a temporary name that is then renamed, so a
training killed mid-write leaves the previous checkpoint whole. Only the newest `keep` stay.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step(\d{8})\.ckpt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step{step:08d}.ckpt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` as the checkpoint of `step`, then drop all but the newest `keep`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    temporary = final.with_name(f".{final.name}.partial")
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    for _, old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_latest(folder: Path) -> dict[str, Any] | None:
    """The newest checkpoint's state, or None when training starts fresh."""
    path = latest_checkpoint(folder)
    if path is None:
        return None
    # Our own files: they hold numpy random states and plain dicts beside the tensors.
    return torch.load(path, map_location="cpu", weights_only=False)
