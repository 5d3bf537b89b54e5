"""A batch's exports, built from its cell table and manifest: the registry, one module per format.

A module declares a `BATCH_FORMAT` (BatchExportFormat) and is listed in BATCH_FORMAT_MODULES;
coco and yolo also have a slide format of the same name in wsi_assets.cells.exports.
`write_batch_exports` writes every batch format into the run's folder and BATCH_EXPORTS is what
the batch's result set publishes, so adding a batch format is its declaration and its module name below.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.batches.exports.format import BatchExportFormat
from wsi_assets.batches.manifest import BatchManifest
from wsi_assets.cells.exports import declared as declared_in

BATCH_FORMAT_MODULES = (
    "coco",
    "yolo",
    "workbook",
    "summary",
)


def declared(attribute: str, modules: tuple[str, ...]) -> tuple:
    """What each of `modules` (in this package) declares as `attribute`, in their order."""
    return declared_in(attribute, modules, __name__)


def export_files(formats: tuple[BatchExportFormat, ...]) -> tuple[str, ...]:
    """The files and folders `formats` write into a batch's folder: what its result set publishes."""
    return tuple(export.file_name for export in formats)


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
        export.name: export.write(
            Path(cells_path), manifest, Path(folder) / export.file_name, *((images_dir,) if export.takes_images else ())
        )
        for export in formats
    }
