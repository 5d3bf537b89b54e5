"""Jobs users launch per slide partition."""

from dagster import AssetSelection, define_asset_job

from wsi_assets.assets import cell_segmentation, cells_csv, cells_zarr, slide_metadata, tissue_mask

process_slide = define_asset_job(
    name="process_slide",
    selection=AssetSelection.assets(slide_metadata, tissue_mask, cell_segmentation, cells_csv, cells_zarr),
    description="Everything for one slide: metadata, tissue mask, nuclei, quality checks, exports.",
)

tissue_mask_only = define_asset_job(
    name="tissue_mask_only",
    selection=AssetSelection.assets(slide_metadata, tissue_mask),
    description="Metadata, thumbnail and tissue mask only (quick look at a new slide).",
)

export_cells = define_asset_job(
    name="export_cells",
    selection=AssetSelection.assets(cells_csv, cells_zarr),
    description="Rewrite the exports from the stored segmentation, without segmenting again.",
)

slide_jobs = [process_slide, tissue_mask_only, export_cells]
