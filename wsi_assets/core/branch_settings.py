"""A branch's settings: `<user>/inputs/<branch>/branch.yaml`, one schema, checked key by key.

    mpp: 0.5                      level-0 µm/px of every slide of the branch (0.05-20)
    exports: [csv, zarr, coco]    formats written (default: those marked default-on in the registry)
    tile_size: 1024               COCO/YOLO tile side in level-0 px (128-8192)
    cell_expansion_um: 0          µm to grow each nucleus outline into a cell (0-20)
    model: learned                segmenter name or model file name
    classifier: default           cell classes: "default" (shipped classifier), "rule", or a classifier file in the branch folder
    lymphocyte_rule: {max_area_um2: 20, min_circularity: 0.8, min_hematoxylin_od: 0.1}
    nuclear_channel: DAPI         stacks: the channel nuclei are segmented in (index from 0, or name)
    modality: auto                auto | brightfield | fluorescence: which model family segments the images

Every problem is one line naming the file and the key. An unknown key is an error, not ignored:
a typo ('exprots') would otherwise silently leave the defaults in force. The file is read by
core.settings_yaml's rules: no aliases, no repeated keys, one value where one is expected, at
most 64 KiB, a regular file with one name. Values are quoted in messages through core.quoting.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wsi_assets.core import settings_yaml
from wsi_assets.core.quoting import short_repr
from wsi_assets.core.settings_yaml import SettingsFileError, parse_settings_text, read_settings
from wsi_assets.core.user_files import branch_inputs_dir
from wsi_assets.slides.errors import SlideSettingsError

BRANCH_SETTINGS = "branch.yaml"
# µm/px of level 0 that any slide scanner or microscope camera produces: 0.05 (100x oil) to
# 20 (a low-power overview). Outside this range the value is a typo or a wrong unit.
PLAUSIBLE_MPP = (0.05, 20.0)
TILE_SIZE_RANGE = (128, 8192)
CELL_EXPANSION_RANGE = (0.0, 20.0)
DEFAULT_TILE_SIZE = 1024
MAX_MODEL_NAME = 200
# Keys that take one value; a list or mapping there is refused by the loader, naming the line.
SINGLE_VALUE_KEYS = ("mpp", "tile_size", "cell_expansion_um", "model", "classifier", "nuclear_channel", "modality")
# auto: decided per image (2-D, or bright objects on a dark background, is fluorescence).
MODALITIES = ("auto", "brightfield", "fluorescence")


def default_exports() -> tuple[str, ...]:
    # Imported here: export modules import the slide reader, which imports this module.
    from wsi_assets.cells.exports import EXPORT_FORMATS

    return tuple(export.setting_name for export in EXPORT_FORMATS if export.default_on)


def known_exports() -> tuple[str, ...]:
    from wsi_assets.cells.exports import EXPORT_FORMATS

    return tuple(export.setting_name for export in EXPORT_FORMATS)


@dataclass(frozen=True)
class BranchSettings:
    """The settings in force for a branch's runs; defaults for every key the file leaves out."""

    mpp: float | None = None
    # None: the registry's default-on formats, looked up only when asked for, so that reading a
    # slide's µm/px (which reads branch.yaml) does not import every export writer.
    exports: tuple[str, ...] | None = None
    tile_size: int = DEFAULT_TILE_SIZE
    cell_expansion_um: float = 0.0
    model: str | None = None
    classifier: str = "default"
    lymphocyte_rule: dict | None = None  # thresholds the file sets; the rest keep the rule's defaults
    nuclear_channel: int | str | None = None  # stacks: channel index or name; None: chosen by name, else channel 0
    modality: str | None = None  # auto | brightfield | fluorescence; None: the segmentation resource's setting
    source: str = "defaults"  # the file they came from, or "defaults" when the branch has none

    def export_names(self) -> tuple[str, ...]:
        """The formats written: those the file lists, else the default-on ones."""
        return self.exports if self.exports is not None else default_exports()

    def wants(self, export_name: str) -> bool:
        return export_name in self.export_names()

    def as_dict(self) -> dict:
        data = asdict(self)
        data["exports"] = list(self.export_names())
        return data


def shown_path(path: Path) -> str:
    """The file as a user knows it: '<user>/inputs/<branch>/<name>' in the upload layout, else '<folder>/<name>'."""
    path = Path(path)
    if path.parent.parent.name == "inputs":
        return f"{path.parent.parent.parent.name}/inputs/{path.parent.name}/{path.name}"
    return f"{path.parent.name}/{path.name}"


def read_settings_file(path: Path, single_values=SINGLE_VALUE_KEYS) -> dict:
    """The mapping in a small YAML settings file (core.settings_yaml's rules); SlideSettingsError for anything else."""
    try:
        return read_settings(Path(path), shown_path(path), single_values)
    except SettingsFileError as error:
        raise SlideSettingsError(str(error)) from None


def read_settings_text(path: Path) -> str:
    """A settings file's text, read by the same file rules ('' when there is none)."""
    if not os.path.lexists(path):
        return ""
    try:
        return settings_yaml.read_settings_text(Path(path), shown_path(path))
    except SettingsFileError as error:
        raise SlideSettingsError(str(error)) from None


def is_plausible_mpp(value) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    low, high = PLAUSIBLE_MPP
    return not isinstance(value, bool) and math.isfinite(number) and low <= number <= high


def checked_mpp(value, shown: str) -> float:
    if not is_plausible_mpp(value):
        low, high = PLAUSIBLE_MPP
        raise SlideSettingsError(f"{shown}: mpp = {short_repr(value)} is not a µm/px value; write a number from {low} to {high}, e.g. 'mpp: 0.5'")
    return float(value)


def _checked_exports(value, shown: str) -> tuple[str, ...]:
    known = known_exports()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise SlideSettingsError(f"{shown}: exports = {short_repr(value)} must be a list of format names, e.g. 'exports: [csv, coco]'; known: {', '.join(known)}")
    unknown = [name for name in value if name not in known]
    if unknown:
        raise SlideSettingsError(f"{shown}: exports names unknown format {short_repr(unknown[0])}; known formats: {', '.join(known)}")
    return tuple(dict.fromkeys(value))


def _checked_int(key: str, value, bounds: tuple[int, int], shown: str) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SlideSettingsError(f"{shown}: {key} = {short_repr(value)} must be a whole number of level-0 pixels from {low} to {high}")
    return value


def _checked_um(key: str, value, bounds: tuple[float, float], shown: str) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise SlideSettingsError(f"{shown}: {key} = {short_repr(value)} must be a number of µm from {low:g} to {high:g}")
    return float(value)


def _is_path(name: str) -> bool:
    # A name is looked up in the user's own folders; '..' or a separator would step out of them.
    return name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0"))


def _checked_model(value, shown: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MODEL_NAME or "\n" in value:
        raise SlideSettingsError(f"{shown}: model = {short_repr(value)} must be a segmenter name ('default', 'classical', 'learned') or a model file name")
    if _is_path(value.strip()):
        raise SlideSettingsError(
            f"{shown}: model = {short_repr(value)} is a path, not a name: give the file name of a model in <user>/models/<branch>/ (no folders, no '..')"
        )
    return value.strip()


def _checked_classifier(value, shown: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MODEL_NAME or "\n" in value:
        raise SlideSettingsError(f"{shown}: classifier = {short_repr(value)} must be 'default', 'rule' or the name of a classifier file (.npz) in the branch folder")
    if _is_path(value.strip()):
        raise SlideSettingsError(
            f"{shown}: classifier = {short_repr(value)} is a path, not a name: give 'default', 'rule' or the file name of a classifier (.npz) "
            "in <user>/models/<branch>/ or the branch folder (no folders, no '..')"
        )
    return value.strip()


def _checked_rule(value, shown: str) -> dict:
    from wsi_assets.cells.lymphocyte_rule import BadRuleSetting, parse_rule

    try:
        return parse_rule(value, shown).as_dict() if value is not None else {}
    except BadRuleSetting as error:
        raise SlideSettingsError(str(error)) from None


def checked_nuclear_channel(value, shown: str) -> int | str:
    """A channel index (from 0) or a channel name; whether the stack has it is checked against the stack."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip() and len(value) <= MAX_MODEL_NAME and "\n" not in value:
        return value.strip()
    raise SlideSettingsError(f"{shown}: nuclear_channel = {short_repr(value)} must be a channel index from 0 or a channel name, e.g. 'nuclear_channel: DAPI'")


def checked_modality(value, shown: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in MODALITIES:
        raise SlideSettingsError(f"{shown}: modality = {short_repr(value)} must be auto, brightfield or fluorescence, e.g. 'modality: fluorescence'")
    return text


_CHECKS = {
    "mpp": checked_mpp,
    "exports": _checked_exports,
    "tile_size": lambda value, shown: _checked_int("tile_size", value, TILE_SIZE_RANGE, shown),
    "cell_expansion_um": lambda value, shown: _checked_um("cell_expansion_um", value, CELL_EXPANSION_RANGE, shown),
    "model": _checked_model,
    "classifier": _checked_classifier,
    "lymphocyte_rule": _checked_rule,
    "nuclear_channel": checked_nuclear_channel,
    "modality": checked_modality,
}
KNOWN_KEYS = tuple(_CHECKS)


def parse_branch_settings(data: dict, shown: str) -> BranchSettings:
    """Settings from a file's mapping; the first problem found, as one line."""
    for key in data:
        if key not in _CHECKS:
            raise SlideSettingsError(f"unknown key {short_repr(key)} in {shown}; known keys: {', '.join(KNOWN_KEYS)}")
    checked: dict[str, Any] = {key: _CHECKS[key](value, shown) for key, value in data.items()}
    return BranchSettings(**checked, source=shown)


def branch_settings_from_text(text: str, shown: str) -> BranchSettings:
    """Settings from branch.yaml's text (e.g. before writing it), by the same rules as the file."""
    try:
        data = parse_settings_text(text, shown, SINGLE_VALUE_KEYS)
    except SettingsFileError as error:
        raise SlideSettingsError(str(error)) from None
    return parse_branch_settings(data, shown)


def read_branch_settings(path: Path) -> BranchSettings:
    """The branch's settings from its branch.yaml; every default when the branch has none."""
    path = Path(path)
    if not os.path.lexists(path):
        return BranchSettings()
    return parse_branch_settings(read_settings_file(path), shown_path(path))


def branch_settings_for(root: Path, user: str, branch: str) -> BranchSettings:
    return read_branch_settings(branch_inputs_dir(Path(root), user, branch) / BRANCH_SETTINGS)
