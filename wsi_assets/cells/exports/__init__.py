"""Exports built from a stored cell table: the registry. One module per format, each declaring what it writes.

Slides: a module declares a `FORMAT` (ExportFormat) and is listed in FORMAT_MODULES. To add one,
write `wsi_assets/cells/exports/<name>.py` with a writer and its `FORMAT`, then add its module
name below. The Dagster asset, its place in the `process_slide` and `export_cells` jobs and the
output file follow from the declaration (wsi_assets/defs/exports.py).

Batches of small images: a module declares a `BATCH_FORMAT` (BatchExportFormat) and is listed in
BATCH_FORMAT_MODULES; a format for both declares both (coco, yolo). `write_batch_exports` writes
every batch format into the run's folder and BATCH_EXPORTS is what the batch's result set
publishes, so adding a batch format is its declaration and its module name below.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from wsi_assets.cells.exports.format import BatchExportFormat, ExportFormat

if TYPE_CHECKING:
    from wsi_assets.batches.manifest import BatchManifest

FORMAT_MODULES = (
    "cells_csv",
    "cells_zarr",
    "cells_geoparquet",
    "cells_geojson",
    "slide_summary",
    "coco",
    "yolo",
)

BATCH_FORMAT_MODULES = (
    "coco",
    "yolo",
    "batch_workbook",
    "batch_summary",
)


def declared(attribute: str, modules: tuple[str, ...]) -> tuple:
    """What each of `modules` (in this package) declares as `attribute`, in their order."""
    return tuple(getattr(import_module(f"{__name__}.{name}"), attribute) for name in modules)


def export_files(formats: tuple[BatchExportFormat, ...]) -> tuple[str, ...]:
    """The files and folders `formats` write into a batch's folder: what its result set publishes."""
    return tuple(export.file_name for export in formats)


EXPORT_FORMATS: tuple[ExportFormat, ...] = declared("FORMAT", FORMAT_MODULES)
BATCH_EXPORT_FORMATS: tuple[BatchExportFormat, ...] = declared("BATCH_FORMAT", BATCH_FORMAT_MODULES)
BATCH_EXPORTS: tuple[str, ...] = export_files(BATCH_EXPORT_FORMATS)


def write_batch_exports(
    cells_path: Path,
    manifest: BatchManifest,
    folder: Path,
    formats: tuple[BatchExportFormat, ...] = BATCH_EXPORT_FORMATS,
    images_dir: Path | None = None,
) -> dict[str, int]:
    """Every batch format into `folder`, each its own atomic write; the entries each wrote, by format name.

    images_dir: the batch's input folder, for the formats that carry the images (a trainable YOLO set).
    """
    return {
        export.name: export.write(Path(cells_path), manifest, Path(folder) / export.file_name, *((images_dir,) if export.takes_images else ()))
        for export in formats
    }
