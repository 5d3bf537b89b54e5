"""µm/px a user states for a slide: a sidecar beside the slide, or the branch's branch.yaml.

A user who writes µm/px down knows something the file does not (a scanner that wrote no value,
or a wrong one), so a stated value wins over the file's metadata. The sidecar is the slide's
own statement, so it wins over the branch's.

    <user>/inputs/<branch>/<slide stem>.yaml     mpp: 0.5     (this slide)
    <user>/inputs/<branch>/branch.yaml           mpp: 0.5     (every slide of the branch)

Unknown keys are ignored (branch.yaml also holds other settings); a malformed file or value
is a one-line error naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from wsi_assets.slides.errors import SlideSettingsError

BRANCH_SETTINGS = "branch.yaml"
SIDECAR_SUFFIX = ".yaml"
MPP_KEY = "mpp"
# µm/px of level 0 that any slide scanner or microscope camera produces: 0.05 (100x oil) to
# 20 (a low-power overview). Outside this range the value is a typo or a wrong unit.
PLAUSIBLE_MPP = (0.05, 20.0)
_MAX_SETTINGS_BYTES = 64 * 1024  # a settings file is a few lines; a big one is a mistake


@dataclass(frozen=True)
class StatedMpp:
    mpp: float
    source: str  # e.g. "sidecar slide01.yaml", "branch.yaml"


def is_plausible_mpp(value) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    low, high = PLAUSIBLE_MPP
    return not isinstance(value, bool) and math.isfinite(number) and low <= number <= high


def sidecar_path(slide_path: Path) -> Path:
    return Path(slide_path).with_name(Path(slide_path).stem + SIDECAR_SUFFIX)


def branch_settings_path(slide_path: Path) -> Path:
    return Path(slide_path).with_name(BRANCH_SETTINGS)


def read_settings_file(path: Path) -> dict:
    """The mapping in a small YAML settings file; SlideSettingsError for anything else."""
    shown = f"{path.parent.name}/{path.name}"
    if path.is_symlink():
        raise SlideSettingsError(f"{shown} is a link: settings files must be real files in the upload folder; copy it in")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_SETTINGS_BYTES + 1)
    except OSError as error:
        raise SlideSettingsError(f"{shown} cannot be read ({error.strerror or error}): fix its permissions") from None
    if len(raw) > _MAX_SETTINGS_BYTES:
        raise SlideSettingsError(f"{shown} is larger than {_MAX_SETTINGS_BYTES // 1024} KB: a settings file holds a few 'key: value' lines")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SlideSettingsError(f"{shown} is not valid YAML{line}: write 'key: value' lines, e.g. 'mpp: 0.5'") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SlideSettingsError(f"{shown} must hold 'key: value' lines (e.g. 'mpp: 0.5'), not a {type(data).__name__}")
    return data


def _stated_in(path: Path, source: str) -> StatedMpp | None:
    if not path.is_file() and not path.is_symlink():
        return None
    settings = read_settings_file(path)
    if MPP_KEY not in settings:
        return None
    value = settings[MPP_KEY]
    if not is_plausible_mpp(value):
        low, high = PLAUSIBLE_MPP
        raise SlideSettingsError(
            f"{path.parent.name}/{path.name}: mpp = {value!r} is not a µm/px value; write a number from {low} to {high}, e.g. 'mpp: 0.5'"
        )
    return StatedMpp(float(value), source)


def stated_mpp(slide_path: Path) -> StatedMpp | None:
    """The µm/px the user stated for this slide (sidecar first, then branch.yaml), or None."""
    slide_path = Path(slide_path)
    sidecar = sidecar_path(slide_path)
    if sidecar.name != BRANCH_SETTINGS:
        found = _stated_in(sidecar, f"sidecar {sidecar.name}")
        if found is not None:
            return found
    return _stated_in(branch_settings_path(slide_path), BRANCH_SETTINGS)
