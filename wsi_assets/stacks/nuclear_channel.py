"""Which channel of a stack holds the nuclei: stated by the user, else found by name, else channel 0 (guessed).

    <user>/inputs/<branch>/<stack>.yaml     nuclear_channel: DAPI    (this stack; or an index from 0)
    <user>/inputs/<branch>/branch.yaml      nuclear_channel: 2       (every stack of the branch)

A stated channel wins over the names, as a stated µm/px wins over a slide's metadata: a user who
writes it down knows something the names do not (two DNA stains, or an H2B fusion named "GFP").
The sidecar is the stack's own statement, so it wins over the branch's. A stated value the stack
does not have is a one-line error naming the file, never a silent fall-back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.branch_settings import (
    BRANCH_SETTINGS,
    read_branch_settings,
    shown_path,
    sidecar_setting,
)
from wsi_assets.core.quoting import short_repr
from wsi_assets.slides.errors import SlideSettingsError

KEY = "nuclear_channel"
# Case-insensitive substrings of the channel names of common DNA stains and nuclear markers.
NUCLEAR_MARKERS = (
    "dapi",
    "hoechst",
    "draq5",
    "draq7",
    "h2b",
    "histone",
    "nucblue",
    "nucred",
    "nucspot",
    "sir-dna",
    "spy-dna",
    "syto",
)
BY_NAME, GUESSED = "channel name", "guessed"


@dataclass(frozen=True)
class NuclearChannel:
    index: int
    name: str
    source: str  # "sidecar <stack>.yaml", "branch.yaml", "channel name" or "guessed"

    @property
    def guessed(self) -> bool:
        return self.source == GUESSED

    def describe(self) -> str:
        return f"channel {self.index} ({self.name}), {self.source}"


def _stated(path: Path) -> int | str | None:
    if not os.path.lexists(path):
        return None
    if path.name == BRANCH_SETTINGS:
        return read_branch_settings(path).nuclear_channel
    return sidecar_setting(path, KEY)


def _resolve(value: int | str, names: tuple[str, ...], shown: str) -> int:
    listed = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    if isinstance(value, int):
        if value < len(names):
            return value
        raise SlideSettingsError(
            f"{shown}: nuclear_channel = {value} is not a channel of this stack (it has {len(names)}: {listed})"
        )
    matches = [i for i, name in enumerate(names) if name.strip().casefold() == value.casefold()]
    if len(matches) == 1:
        return matches[0]
    why = "names several channels" if matches else "is not a channel name of this stack"
    raise SlideSettingsError(f"{shown}: nuclear_channel = {short_repr(value)} {why} ({listed}); give the channel's index instead")


def by_name(names: tuple[str, ...]) -> int | None:
    """The first channel whose name contains a nuclear marker's name, or None."""
    for marker in NUCLEAR_MARKERS:
        for i, name in enumerate(names):
            if marker in name.casefold():
                return i
    return None


def choose_nuclear_channel(
    names: tuple[str, ...], sidecar: Path | None = None, branch_yaml: Path | None = None
) -> NuclearChannel:
    """The nuclear channel of a stack with channel `names`, from its sidecar, its branch.yaml, its names, or channel 0."""
    names = tuple(names)
    for path in (sidecar, branch_yaml):
        if path is None:
            continue
        value = _stated(Path(path))
        if value is not None:
            index = _resolve(value, names, shown_path(Path(path)))
            source = BRANCH_SETTINGS if Path(path).name == BRANCH_SETTINGS else f"sidecar {Path(path).name}"
            return NuclearChannel(index, names[index], source)
    found = by_name(names)
    if found is not None:
        return NuclearChannel(found, names[found], BY_NAME)
    return NuclearChannel(0, names[0] if names else "0", GUESSED)
