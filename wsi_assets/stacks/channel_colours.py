"""Display colours for a stack's channels, from their names: the conventions of fluorescence microscopy.

A name matches a dye or protein when it contains one of the table's words, case-insensitively,
ignoring spaces, hyphens and underscores ("Alexa Fluor 488" → green, "far-red" → magenta). Each
conventional colour goes to the first channel that asks for it; a later channel asking for a taken
colour, and every channel whose name matches nothing, gets the next free colour of a fallback
palette, so a composite never shows two channels in one colour while a free colour remains.
"""

from __future__ import annotations

BLUE, GREEN, RED, MAGENTA = "0000FF", "00FF00", "FF0000", "FF00FF"
# The first word found decides; wavelengths come last, so a dye's name decides over a number written beside it.
NAMED_COLOURS: tuple[tuple[str, str], ...] = (
    ("dapi", BLUE),
    ("hoechst", BLUE),
    ("gfp", GREEN),
    ("fitc", GREEN),
    ("mcherry", RED),
    ("rfp", RED),
    ("tritc", RED),
    ("cy3", RED),
    ("cy5", MAGENTA),
    ("farred", MAGENTA),
    ("488", GREEN),
    ("555", RED),
    ("568", RED),
    ("594", RED),
    ("647", MAGENTA),
)
# Unknown names: green and magenta first (told apart by colour-blind viewers), then the other bright hues.
FALLBACK_PALETTE = (GREEN, MAGENTA, "00FFFF", "FFFF00", RED, BLUE, "FF8000", "8000FF", "FFFFFF")
# A single unnamed channel is shown in grey, as every viewer shows a one-channel image.
SINGLE_CHANNEL = "FFFFFF"
# With more channels than this, only the first ones start visible: a composite of many is unreadable.
MAX_ACTIVE = 4


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def named_colour(name: str) -> str | None:
    """The conventional colour (RRGGBB) of a channel name, or None when the name matches no dye or protein."""
    key = _key(name)
    return next((colour for word, colour in NAMED_COLOURS if word in key), None)


def channel_colours(names: tuple[str, ...] | list[str]) -> list[str]:
    """One RRGGBB colour per channel: the name's conventional colour when free, else the next free fallback colour."""
    wanted = [named_colour(name) for name in names]
    if len(names) == 1 and wanted[0] is None:
        return [SINGLE_CHANNEL]
    colours: list[str | None] = [None] * len(names)
    taken: set[str] = set()
    for i, colour in enumerate(wanted):
        if colour is not None and colour not in taken:
            colours[i] = colour
            taken.add(colour)
    free = [colour for colour in FALLBACK_PALETTE if colour not in taken] or list(FALLBACK_PALETTE)
    unassigned = [i for i, colour in enumerate(colours) if colour is None]
    for n, i in enumerate(unassigned):
        colours[i] = free[n % len(free)]  # more channels than colours: the palette repeats
    return [str(colour) for colour in colours]


def channel_active(count: int) -> list[bool]:
    """Which channels start visible: all of up to MAX_ACTIVE, else the first MAX_ACTIVE."""
    return [count <= MAX_ACTIVE or i < MAX_ACTIVE for i in range(count)]
