"""Exports built from a stored cell table: the registry. One module per format, each declaring what it writes.

Slides: a module declares a `FORMAT` (ExportFormat) and is listed in FORMAT_MODULES. To add one,
write `wsi_assets/cells/exports/<name>.py` with a writer and its `FORMAT`, then add its module
name below. The Dagster asset, its place in the `process_slide` and `export_cells` jobs and the
output file follow from the declaration (wsi_assets/defs/exports.py).

A batch's formats, which read its manifest, have their own registry in wsi_assets.batches.exports.
"""

from __future__ import annotations

from importlib import import_module

from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.core.export_names import check_registry

FORMAT_MODULES = (
    "cells_csv",
    "cells_zarr",
    "cells_geoparquet",
    "cells_geojson",
    "slide_summary",
    "coco",
    "yolo",
)


def declared(attribute: str, modules: tuple[str, ...], package: str = __name__) -> tuple:
    """What each of `modules` (in `package`, by default this one) declares as `attribute`, in their order."""
    return tuple(getattr(import_module(f"{package}.{name}"), attribute) for name in modules)


EXPORT_FORMATS: tuple[ExportFormat, ...] = declared("FORMAT", FORMAT_MODULES)
# branch.yaml is checked against core's list of names without importing this registry; fail at
# import, naming both, if they drift apart.
check_registry(tuple((export.setting_name, export.default_on) for export in EXPORT_FORMATS))
