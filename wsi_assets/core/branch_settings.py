"""A branch's settings: `<user>/inputs/<branch>/branch.yaml`, one schema (the pydantic model BranchFile).

    mpp: 0.5                      level-0 µm/px of every slide of the branch (0.05-20)
    exports: [csv, zarr, coco]    formats written (default: those marked default-on in the registry)
    tile_size: 1024               COCO/YOLO tile side in level-0 px (128-8192)
    cell_expansion_um: 0          µm to grow each nucleus outline into a cell (0-20)
    model: learned                segmenter name or model file name
    classifier: default           cell classes: "default" (shipped classifier), "rule", "cnn" (the nucleus classifier network, run while segmenting), "forest+cnn" (the mean of the two's probabilities), or a classifier file in the branch folder
    lymphocyte_rule: {max_area_um2: 20, min_circularity: 0.8, min_hematoxylin_od: 0.1}
    nuclear_channel: DAPI         stacks: the channel nuclei are segmented in (index from 0, or name)
    modality: auto                auto | brightfield | fluorescence: which model family segments the images

Every problem is one line naming the file and the key. An unknown key is an error, not ignored:
a typo ('exprots') would otherwise silently leave the defaults in force. The file is read by
core.settings_yaml's rules: no aliases, no repeated keys, one value where one is expected, at
most 64 KiB, a regular file with one name. Values are quoted in messages through core.quoting.
A slide's or stack's sidecar (`<name>.yaml`) states some of the same keys; `sidecar_setting`
checks each by the same field of the same model.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from wsi_assets.core import settings_yaml
from wsi_assets.core.quoting import short_repr
from wsi_assets.core.settings_yaml import SettingsFileError, parse_settings_text, read_settings
from wsi_assets.core.errors import SlideSettingsError
from wsi_assets.core.export_names import DEFAULT_EXPORTS, EXPORT_NAMES
from wsi_assets.core.lymphocyte_thresholds import BadRuleSetting, checked_thresholds
from wsi_assets.core.user_files import branch_inputs_dir

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
    # The names are data in core (the export registry checks it matches them), so that reading a
    # branch.yaml never imports an export writer.
    return DEFAULT_EXPORTS


def known_exports() -> tuple[str, ...]:
    return EXPORT_NAMES


@dataclass(frozen=True)
class BranchSettings:
    """The settings in force for a branch's runs; defaults for every key the file leaves out."""

    mpp: float | None = None
    # None: the registry's default-on formats.
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


def _is_path(name: str) -> bool:
    # A name is looked up in the user's own folders; '..' or a separator would step out of them.
    return name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0"))


# Why a value was refused, after "<file>: <key> = <value> ": one line per key, whatever the check
# that failed, except a path given for a name (PATH_NOT_NAME) and the checks that write their own
# whole line (an unknown format, a lymphocyte_rule threshold).
SHOULD_BE = {
    "mpp": f"is not a µm/px value; write a number from {PLAUSIBLE_MPP[0]} to {PLAUSIBLE_MPP[1]}, e.g. 'mpp: 0.5'",
    "exports": f"must be a list of format names, e.g. 'exports: [csv, coco]'; known: {', '.join(EXPORT_NAMES)}",
    "tile_size": f"must be a whole number of level-0 pixels from {TILE_SIZE_RANGE[0]} to {TILE_SIZE_RANGE[1]}",
    "cell_expansion_um": f"must be a number of µm from {CELL_EXPANSION_RANGE[0]:g} to {CELL_EXPANSION_RANGE[1]:g}",
    "model": "must be a segmenter name ('default', 'classical', 'learned') or a model file name",
    "classifier": "must be 'default', 'rule', 'cnn', 'forest+cnn' or the name of a classifier file (.npz) in the branch folder",
    "lymphocyte_rule": "must be a mapping, e.g. 'lymphocyte_rule: {max_area_um2: 45}'",
    "nuclear_channel": "must be a channel index from 0 or a channel name, e.g. 'nuclear_channel: DAPI'",
    "modality": "must be auto, brightfield or fluorescence, e.g. 'modality: fluorescence'",
}
PATH_NOT_NAME = {
    "model": "give the file name of a model in <user>/models/<branch>/ (no folders, no '..')",
    "classifier": "give 'default', 'rule', 'cnn', 'forest+cnn' or the file name of a classifier (.npz) in <user>/models/<branch>/ or the branch folder (no folders, no '..')",
}


class _WholeLine(ValueError):
    """A refusal whose message is already the user's whole line."""


def _shown(info: ValidationInfo) -> str:
    return (info.context or {}).get("shown", BRANCH_SETTINGS)


def _refused(kind: str) -> PydanticCustomError:
    # The type is what the translation keys on; the message is never shown.
    return PydanticCustomError(kind, "refused")


def _plausible_mpp(value):
    if not is_plausible_mpp(value):
        raise _refused("implausible_mpp")
    return float(value)


def _one_name_is_a_list(value):
    return [value] if isinstance(value, str) else value


def _known_formats(names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    unknown = [name for name in names if name not in EXPORT_NAMES]
    if unknown:
        raise _WholeLine(
            f"{_shown(info)}: exports names unknown format {short_repr(unknown[0])}; known formats: {', '.join(EXPORT_NAMES)}"
        )
    return tuple(dict.fromkeys(names))


def _one_line_name(value: str) -> str:
    if not value.strip() or "\n" in value:
        raise _refused("not_a_name")
    return value.strip()


def _file_name(value: str) -> str:
    if _is_path(value):
        raise _refused("path_not_name")
    return value


def _thresholds(value, info: ValidationInfo):
    try:
        return checked_thresholds(value, _shown(info)) if value is not None else {}
    except BadRuleSetting as error:
        raise _WholeLine(str(error)) from None


def _modality(value):
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in MODALITIES:
        raise _refused("unknown_modality")
    return text


Name = Annotated[str, Field(strict=True, max_length=MAX_MODEL_NAME), AfterValidator(_one_line_name)]
FileName = Annotated[Name, AfterValidator(_file_name)]


class BranchFile(BaseModel):
    """What a branch.yaml may say, and what each key must hold; a sidecar's keys are checked by the same fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mpp: Annotated[float, BeforeValidator(_plausible_mpp)] | None = None
    exports: (
        Annotated[
            tuple[Annotated[str, Field(strict=True)], ...], BeforeValidator(_one_name_is_a_list), AfterValidator(_known_formats)
        ]
        | None
    ) = None
    tile_size: Annotated[int, Field(strict=True, ge=TILE_SIZE_RANGE[0], le=TILE_SIZE_RANGE[1])] | None = None
    cell_expansion_um: (
        Annotated[float, Field(strict=True, ge=CELL_EXPANSION_RANGE[0], le=CELL_EXPANSION_RANGE[1], allow_inf_nan=False)] | None
    ) = None
    model: FileName | None = None
    classifier: FileName | None = None
    lymphocyte_rule: Annotated[dict[str, float] | None, BeforeValidator(_thresholds)] = None
    nuclear_channel: Annotated[int, Field(strict=True, ge=0)] | Name | None = None
    modality: Annotated[str, BeforeValidator(_modality)] | None = None

    @field_validator(
        "mpp", "exports", "tile_size", "cell_expansion_um", "model", "classifier", "nuclear_channel", "modality", mode="before"
    )
    @classmethod
    def _stated(cls, value):
        # `key:` with nothing after it is a mistake, not "the default": only lymphocyte_rule may be empty.
        if value is None:
            raise _refused("no_value")
        return value


KNOWN_KEYS = tuple(BranchFile.model_fields)


def _one_line(error: ValidationError, data: dict, shown: str) -> str:
    """The first problem in the file's order, as the user's one line."""
    order = {key: position for position, key in enumerate(data)}
    first = min(error.errors(include_url=False), key=lambda problem: order.get(problem["loc"][0] if problem["loc"] else None, -1))
    key = first["loc"][0] if first["loc"] else None
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _WholeLine):
        return str(cause)
    said = f"{shown}: {key} = {short_repr(data.get(key))}"
    if first["type"] == "path_not_name":
        return f"{said} is a path, not a name: {PATH_NOT_NAME[str(key)]}"
    return f"{said} {SHOULD_BE[str(key)]}"


def checked_file(data: dict, shown: str) -> BranchFile:
    """The file's mapping checked against the schema; SlideSettingsError (one line) for the first problem."""
    # Unknown keys first, and here rather than by extra="forbid": a YAML key may be a number,
    # a date or null, which pydantic would name as a string.
    for key in data:
        if key not in KNOWN_KEYS:
            raise SlideSettingsError(f"unknown key {short_repr(key)} in {shown}; known keys: {', '.join(KNOWN_KEYS)}")
    try:
        return BranchFile.model_validate(data, context={"shown": shown})
    except ValidationError as error:
        raise SlideSettingsError(_one_line(error, data, shown)) from None


def checked_setting(key: str, value, shown: str):
    """One key's value, checked as branch.yaml checks it (for a sidecar that states the same key)."""
    return getattr(checked_file({key: value}, shown), key)


def checked_mpp(value, shown: str) -> float:
    return checked_setting("mpp", value, shown)


def sidecar_setting(path: Path, key: str):
    """`key`'s value in a slide's or stack's sidecar (checked as in branch.yaml), or None; the sidecar's other keys are not read."""
    settings = read_settings_file(path)
    return checked_setting(key, settings[key], shown_path(path)) if key in settings else None


def parse_branch_settings(data: dict, shown: str) -> BranchSettings:
    """Settings from a file's mapping; the first problem found, as one line."""
    stated = checked_file(data, shown).model_dump(exclude_unset=True)
    return BranchSettings(**stated, source=shown)


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
