"""Everything Dagster loads: assets, checks, jobs, the upload sensor and resources."""

from dagster import Definitions

from wsi_assets.assets import slide_assets
from wsi_assets.checks import slide_checks
from wsi_assets.jobs import model_jobs, slide_jobs
from wsi_assets.model_assets import model_assets
from wsi_assets.resources import SegmentationResource, UserFilesResource
from wsi_assets.sensors import upload_sensor

defs = Definitions(
    assets=[*slide_assets, *model_assets],
    asset_checks=slide_checks,
    jobs=[*slide_jobs, *model_jobs],
    sensors=[upload_sensor],
    resources={"user_files": UserFilesResource(), "segmentation": SegmentationResource()},
)
