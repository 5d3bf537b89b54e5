"""The names branch.yaml's `exports` may list, as data, so that validating a branch.yaml needs no export writer.

The writers and their declarations live in `wsi_assets.cells.exports`; that registry checks at
import that its formats are exactly these names, in this order, with these defaults, so the two
cannot drift apart unnoticed: adding a format is its module, its line in FORMAT_MODULES, and its
name here.
"""

from __future__ import annotations

# In the registry's order (FORMAT_MODULES), which is the order messages list them in.
EXPORT_NAMES: tuple[str, ...] = ("csv", "zarr", "geoparquet", "geojson", "summary", "coco", "yolo")
# Training sets: many files per slide, written only when a branch asks for them.
DEFAULT_OFF_EXPORTS: tuple[str, ...] = ("coco", "yolo")
DEFAULT_EXPORTS: tuple[str, ...] = tuple(name for name in EXPORT_NAMES if name not in DEFAULT_OFF_EXPORTS)


def check_registry(declared: tuple[tuple[str, bool], ...]) -> None:
    """Raise unless `declared` ((setting name, default on) per format, in order) matches the names above."""
    expected = tuple((name, name not in DEFAULT_OFF_EXPORTS) for name in EXPORT_NAMES)
    if tuple(declared) != expected:
        raise RuntimeError(
            f"wsi_assets.cells.exports declares {declared}, but core/export_names.py lists {expected}: "
            "keep the two in step (a new format needs its name in core/export_names.py)"
        )
