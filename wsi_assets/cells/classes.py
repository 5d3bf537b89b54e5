"""Cell classes: CoNSeP's standard grouping, each with the one display colour overlays and exports use."""

from __future__ import annotations

import hashlib

from wsi_assets.core.quoting import short_repr

# The stored cell table's column for a nucleus's class, when a classifier has filled it.
CLASS_COLUMN = "class"

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "inflammatory": (220, 50, 47),  # mostly lymphocytes
    "epithelial": (38, 139, 60),
    "spindle": (38, 110, 210),
    "other": (230, 170, 20),
}


def class_colour(name: str) -> tuple[int, int, int]:
    """The class's display colour; a name outside the vocabulary gets a stable colour of its own.

    Never none: QuPath refuses a classification that has a name but no colour.
    """
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    if name == UNCLASSIFIED:
        return UNCLASSIFIED_COLOUR
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    # Kept away from black and white so the outline stays visible on H&E.
    return tuple(40 + b % 176 for b in digest[:3])  # type: ignore[return-value]


CLASS_NAMES: tuple[str, ...] = tuple(CLASS_COLOURS)
# Nuclei no classifier looked at: fluorescence images (the classifiers are H&E's). Outside the
# vocabulary on purpose: exports add it after CLASS_NAMES only where such nuclei can occur.
UNCLASSIFIED = "unclassified"
UNCLASSIFIED_COLOUR = (160, 160, 160)
# CoNSeP's type ids (types.csv `type_id`) in its standard 4-class grouping.
CONSEP_TYPE_CLASSES = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}


class UnknownCellClass(ValueError):
    """A class name outside the fixed vocabulary."""


def checked_class_names(names, source: str) -> tuple[str, ...]:
    """`names` if every one is a known class; else one line naming the first stranger and the vocabulary."""
    names = tuple(str(name) for name in names)
    for name in names:
        if name not in CLASS_COLOURS:
            raise UnknownCellClass(
                f"{source} names an unknown cell class {short_repr(name)}; the classes are {', '.join(CLASS_NAMES)}"
            )
    return names
