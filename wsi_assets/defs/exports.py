"""One export asset per format declared in wsi_assets.cells.exports, all in group `exports`.

Which formats a run writes follows the branch's branch.yaml (`exports`, else the formats marked
default-on): an asset whose format is not requested writes nothing, removes any copy its run's
set carried over from the previous set, and says so in its metadata.
"""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
)

from wsi_assets.cells.exports import EXPORT_FORMATS
from wsi_assets.cells.exports.format import ExportFormat
from wsi_assets.cells.exports.provenance import export_provenance
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import partition_asset
from wsi_assets.defs.errors import TRANSIENT_RETRY
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.results import published_location, run_set
from wsi_assets.defs.classification import cell_classification
from wsi_assets.defs.segmentation import cell_segmentation
from wsi_assets.results.sweep import remove_entry

EXPORTS_GROUP = "exports"
slide_export_asset = partition_asset(slides_partitions, EXPORTS_GROUP)
NOT_REQUESTED = "not requested in branch.yaml"


def _size_bytes(path):
    # COCO and YOLO write a folder; the UI shows what the user downloads.
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def export_asset(export: ExportFormat) -> AssetsDefinition:
    """The asset that writes `export`'s file for a slide from its stored segmentation."""

    @slide_export_asset(
        name=export.asset_name,
        deps=[cell_classification],
        kinds=set(export.kinds),
        retry_policy=TRANSIENT_RETRY,
        description=export.description,
    )
    def write_export(context: AssetExecutionContext, user_files: UserFilesResource) -> MaterializeResult:
        key = SlideKey.parse(context.partition_key)
        settings = branch_settings_for(user_files.root_path, key.user, key.branch)
        outputs = run_set(context, user_files, "exports")
        destination = outputs.export_file(export.file_name)
        shown_settings = MetadataValue.json(settings.as_dict())
        if not settings.wants(export.setting_name):
            if destination.exists() or destination.is_symlink():
                remove_entry(destination)
            context.log.info(f"{key}: {export.setting_name} {NOT_REQUESTED} ({settings.source}); nothing written")
            return MaterializeResult(
                metadata={"written": False, "reason": NOT_REQUESTED, "format": export.setting_name, "settings": shown_settings}
            )
        summary = outputs.require(outputs.segmentation_json, cell_segmentation.key.to_user_string())
        cells = outputs.require(outputs.cells_parquet, cell_segmentation.key.to_user_string())
        slide_file = user_files.slide_file(key)
        provenance = export_provenance(
            summary,
            key.partition_key,
            slide_file.name,
            slide_path=slide_file,
            run_id=context.run.run_id,
            settings=settings.as_dict(),
        )
        written = export.write(cells, destination, provenance)
        context.log.info(f"{key}: wrote {written} rows of {export.setting_name} to {destination} (settings: {settings.source})")
        return MaterializeResult(
            metadata={
                "written": True,
                "format": export.setting_name,
                "rows": written,
                "cells": written,
                "path": MetadataValue.path(str(published_location(user_files, key, outputs, destination))),
                "size_mb": round(_size_bytes(destination) / 1e6, 3),
                "settings": shown_settings,
            }
        )

    return write_export


export_assets = [export_asset(export) for export in EXPORT_FORMATS]
