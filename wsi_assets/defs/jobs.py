"""Jobs users launch, selecting assets by group.

Steps of one slide form a chain, so they run in the run's own process: one process start per
run instead of one per step, which matters with thousands of slides queued. Deployments with
several GPU machines set $WSI_EXECUTOR=celery instead (defs/executors.py): each step becomes a
Celery task and the segmentation step goes to the GPU workers' queue.

Each slide job ends with the `results` group (slide_results), which publishes the run's result
set as a whole: process_slide publishes a full set; export_cells the published set with new
exports; tissue_mask_only new metadata and tissue mask, and drops the cells and exports of the
previous set, which were found on the previous tissue mask (a slide whose mask was redone has
no cells until process_slide runs again).
"""

from dagster import AssetSelection, define_asset_job, in_process_executor

from wsi_assets.defs.executors import slide_executor
from wsi_assets.defs.cell_classifier import CELL_CLASSIFIER_GROUP
from wsi_assets.defs.classification import CLASSIFICATION_GROUP
from wsi_assets.defs.exports import EXPORTS_GROUP
from wsi_assets.defs.models import MODELS_GROUP, nuclei_model_evaluation
from wsi_assets.defs.results import RESULTS_GROUP
from wsi_assets.defs.segmentation import SEGMENTATION_GROUP
from wsi_assets.defs.slides import SLIDES_GROUP
from wsi_assets.defs.stack_slices import STACK_SLICES_GROUP
from wsi_assets.defs.stacks import STACKS_GROUP

SLIDE_EXECUTOR = slide_executor()
# Training and scoring read the shared data where they are launched, whatever engine slides use.
MODEL_EXECUTOR = in_process_executor

process_slide = define_asset_job(
    name="process_slide",
    selection=AssetSelection.groups(SLIDES_GROUP, SEGMENTATION_GROUP, CLASSIFICATION_GROUP, EXPORTS_GROUP, RESULTS_GROUP),
    executor_def=SLIDE_EXECUTOR,
    description="Everything for one slide: metadata, tissue mask, nuclei and their measurements, classes, quality checks, exports.",
)

tissue_mask_only = define_asset_job(
    name="tissue_mask_only",
    selection=AssetSelection.groups(SLIDES_GROUP, RESULTS_GROUP),
    executor_def=SLIDE_EXECUTOR,
    description=(
        "Metadata, thumbnail and tissue mask only (quick look at a new slide). On a slide already processed, "
        "the published set loses its cells and exports (they were found on the old tissue mask) and the slide "
        "drops out of summary.xlsx until process_slide runs again."
    ),
)

export_cells = define_asset_job(
    name="export_cells",
    selection=AssetSelection.groups(EXPORTS_GROUP, RESULTS_GROUP),
    executor_def=SLIDE_EXECUTOR,
    description="Rewrite the exports from the stored segmentation, without segmenting again.",
)

classify_cells = define_asset_job(
    name="classify_cells",
    selection=AssetSelection.groups(CLASSIFICATION_GROUP, EXPORTS_GROUP, RESULTS_GROUP),
    executor_def=SLIDE_EXECUTOR,
    description="Re-apply the lymphocyte rule or a classifier to the stored measurements and rewrite the exports, without segmenting again.",
)

train_cell_classifier = define_asset_job(
    name="train_cell_classifier",
    executor_def=MODEL_EXECUTOR,
    selection=AssetSelection.groups(CELL_CLASSIFIER_GROUP),
    description="Train the cell-type classifier from typed nuclei (CoNSeP's layout), scored on held-out tiles.",
)

train_nuclei_model = define_asset_job(
    name="train_nuclei_model",
    executor_def=MODEL_EXECUTOR,
    selection=AssetSelection.groups(MODELS_GROUP),
    description="Train the nucleus model from a labelled folder, then score it on the held-out split.",
)

evaluate_nuclei_model = define_asset_job(
    name="evaluate_nuclei_model",
    executor_def=MODEL_EXECUTOR,
    selection=AssetSelection.assets(nuclei_model_evaluation),
    description="Score a nucleus model (trained, default, classical or a file) on labelled images.",
)

process_stack = define_asset_job(
    name="process_stack",
    selection=AssetSelection.groups(STACKS_GROUP),
    executor_def=SLIDE_EXECUTOR,  # the engine slides use (in process unless WSI_EXECUTOR says otherwise)
    description="Everything for one stack: metadata, OME-Zarr copy, channel statistics, PCA, previews, published together.",
)

stack_slice = define_asset_job(
    name="stack_slice",
    selection=AssetSelection.groups(STACK_SLICES_GROUP),
    executor_def=SLIDE_EXECUTOR,  # the engine slides use (in process unless WSI_EXECUTOR says otherwise)
    description="One (t, z, c) plane of a processed stack as PNG: set t, z and c in the run config.",
)

stack_jobs = [process_stack, stack_slice]
slide_jobs = [process_slide, tissue_mask_only, export_cells, classify_cells]
model_jobs = [train_nuclei_model, evaluate_nuclei_model, train_cell_classifier]
