"""Exports built from the stored cell table. One module per format, each declaring a `FORMAT`.

To add a format: write `wsi_assets/cells/exports/<name>.py` with a writer and its `FORMAT`,
then add its module name below. The Dagster asset, its place in the `process_slide` and
`export_cells` jobs and the output file follow from the declaration.
"""

from __future__ import annotations

from importlib import import_module

from wsi_assets.cells.exports.format import ExportFormat

FORMAT_MODULES = (
    "cells_csv",
    "cells_zarr",
    "cells_geoparquet",
    "cells_geojson",
    "slide_summary",
    "coco",
    "yolo",
)

EXPORT_FORMATS: tuple[ExportFormat, ...] = tuple(import_module(f"{__name__}.{name}").FORMAT for name in FORMAT_MODULES)
