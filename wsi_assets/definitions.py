"""Everything Dagster loads (webserver, daemon, CLI): the definitions of each domain in wsi_assets.defs."""

from dagster import Definitions

from wsi_assets.defs.batches import batch_assets, batch_sensor, process_batch
from wsi_assets.defs.cell_classifier import cell_classifier_assets
from wsi_assets.defs.classification import classification_assets, classification_checks
from wsi_assets.defs.executors import slide_executor
from wsi_assets.defs.exports import export_assets
from wsi_assets.defs.finetune import finetune_assets, finetune_jobs
from wsi_assets.defs.jobs import model_jobs, slide_jobs, stack_jobs
from wsi_assets.defs.models import model_assets
from wsi_assets.defs.quality import slide_checks
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.defs.results import result_assets
from wsi_assets.defs.queue_status import queue_status_sensor
from wsi_assets.defs.reviews import review_assets, review_jobs, review_sensor
from wsi_assets.defs.segmentation import segmentation_assets
from wsi_assets.defs.sensors import upload_sensor
from wsi_assets.defs.slides import slide_assets
from wsi_assets.defs.stack_slices import stack_slice_assets
from wsi_assets.defs.stacks import stack_assets
from wsi_assets.defs.upload_status import upload_status

defs = Definitions(
    assets=[
        *slide_assets,
        *segmentation_assets,
        *classification_assets,
        *export_assets,
        *result_assets,
        *model_assets,
        *cell_classifier_assets,
        *review_assets,
        *finetune_assets,
        *stack_assets,
        *stack_slice_assets,
        *batch_assets,
        upload_status,
    ],
    asset_checks=[*slide_checks, *classification_checks],
    jobs=[*slide_jobs, *stack_jobs, *model_jobs, *review_jobs, *finetune_jobs, process_batch],
    sensors=[upload_sensor, review_sensor, queue_status_sensor, batch_sensor],
    resources={"user_files": UserFilesResource(), "segmentation": SegmentationResource()},
    # What "Materialize" in the asset graph runs (the implicit asset job) and any job that names
    # no executor: the slide jobs' engine. Dagster's default would start a process per step,
    # ~10 s of imports each: a UI launch of one slide took 10x a process_slide run.
    executor=slide_executor(),
)
