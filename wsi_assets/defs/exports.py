"""One export asset per format declared in wsi_assets.cells.exports, all in group `exports`."""


from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.exports.provenance import export_provenance
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.errors import TRANSIENT_RETRY, fails_clearly
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.results import run_set
from wsi_assets.defs.segmentation import cell_segmentation

EXPORTS_GROUP = "exports"


def export_asset(export: ExportFormat) -> AssetsDefinition:
    """The asset that writes `export`'s file for a slide from its stored segmentation."""

    @asset(
        name=export.asset_name,
        partitions_def=slides_partitions,
        group_name=EXPORTS_GROUP,
        deps=[cell_segmentation],
        kinds=set(export.kinds),
        retry_policy=TRANSIENT_RETRY,
        description=export.description,
    )
    @fails_clearly
    def write_export(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
        key = SlideKey.parse(context.partition_key)
        outputs = run_set(context, user_files, "exports")
        summary = outputs.require(outputs.segmentation_json, cell_segmentation.key.to_user_string())
        cells = outputs.require(outputs.cells_parquet, cell_segmentation.key.to_user_string())
        provenance = export_provenance(summary, key.partition_key, user_files.slide_file(key).name)
        destination = outputs.export_file(export.file_name)
        written = export.write(cells, destination, provenance)
        context.log.info(f"{key}: wrote {written} cells to {destination}")
        return MaterializeResult(
            metadata={
                "cells": written,
                "path": MetadataValue.path(str(destination)),
                "size_mb": round(destination.stat().st_size / 1e6, 3),
            }
        )

    return write_export


export_assets = [export_asset(export) for export in EXPORT_FORMATS]
