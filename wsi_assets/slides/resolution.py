"""µm/px a user states for a slide: a sidecar beside the slide, or the branch's branch.yaml.

A user who writes µm/px down knows something the file does not (a scanner that wrote no value,
or a wrong one), so a stated value wins over the file's metadata. The sidecar is the slide's
own statement, so it wins over the branch's.

    <user>/inputs/<branch>/<slide stem>.yaml     mpp: 0.5     (this slide)
    <user>/inputs/<branch>/branch.yaml           mpp: 0.5     (every slide of the branch)

branch.yaml is read through its one schema (wsi_assets.core.branch_settings), so an unknown
key or bad value there fails here too; a sidecar states only `mpp` and its other keys are
ignored. A malformed file or value is a one-line error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.branch_settings import (
    BRANCH_SETTINGS,
    PLAUSIBLE_MPP,
    is_plausible_mpp,
    read_branch_settings,
    read_settings_file,
    sidecar_setting,
)

__all__ = ["BRANCH_SETTINGS", "PLAUSIBLE_MPP", "StatedMpp", "is_plausible_mpp", "read_settings_file", "stated_mpp"]

SIDECAR_SUFFIX = ".yaml"
MPP_KEY = "mpp"


@dataclass(frozen=True)
class StatedMpp:
    mpp: float
    source: str  # e.g. "sidecar slide01.yaml", "branch.yaml"


def sidecar_path(slide_path: Path) -> Path:
    return Path(slide_path).with_name(Path(slide_path).stem + SIDECAR_SUFFIX)


def branch_settings_path(slide_path: Path) -> Path:
    return Path(slide_path).with_name(BRANCH_SETTINGS)


def _stated_in_sidecar(path: Path) -> StatedMpp | None:
    if not path.is_file() and not path.is_symlink():
        return None
    mpp = sidecar_setting(path, MPP_KEY)
    return StatedMpp(mpp, f"sidecar {path.name}") if mpp is not None else None


def stated_mpp(slide_path: Path) -> StatedMpp | None:
    """The µm/px the user stated for this slide (sidecar first, then branch.yaml), or None."""
    slide_path = Path(slide_path)
    sidecar = sidecar_path(slide_path)
    if sidecar.name != BRANCH_SETTINGS:
        found = _stated_in_sidecar(sidecar)
        if found is not None:
            return found
    settings = read_branch_settings(branch_settings_path(slide_path))
    return StatedMpp(settings.mpp, BRANCH_SETTINGS) if settings.mpp is not None else None
