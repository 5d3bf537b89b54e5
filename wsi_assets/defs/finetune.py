"""`finetune_from_reviews`: a branch's nucleus model fine-tuned from its pathologists' corrected cells.

One partition per branch (`<user>/<branch>`, the `branches` partitions the review sensor adds): the
fine-tune learns from every current cell review of the branch at once, so a few reviewed slides
add up. The work is `wsi_assets.finetuning.from_reviews.finetune_branch`.
"""

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
    in_process_executor,
)
from pydantic import Field

from wsi_assets.defs.errors import fails_clearly
from wsi_assets.defs.partitions import branches_partitions
from wsi_assets.defs.resources import SegmentationResource, UserFilesResource
from wsi_assets.defs.reviews import REVIEW_ERRORS, REVIEWS_GROUP
from wsi_assets.finetuning.comparison import MIN_GAIN
from wsi_assets.finetuning.from_reviews import finetune_branch
from wsi_assets.finetuning.nucleus_finetune import BASE_IMAGES, FineTuneSettings
from wsi_assets.finetuning.review_tiles import TILE_PX, TooFewReviewedTiles
from wsi_assets.training.defaults import default_training_data


class FineTuneConfig(Config):
    steps: int = Field(
        default=FineTuneSettings.steps, ge=0, le=5000, description="Optimiser steps (0: only score the branch's current model)"
    )
    batch: int = Field(
        default=FineTuneSettings.batch, ge=2, le=64, description="Crops per step: half from the reviews, half from the base data"
    )
    crop: int = Field(default=FineTuneSettings.crop, ge=64, le=512, description="Crop side in model pixels")
    lr: float = Field(default=FineTuneSettings.lr, gt=0, le=0.1, description="Peak learning rate (one-cycle schedule)")
    threads: int = Field(default=FineTuneSettings.threads, ge=0, le=64, description="torch CPU threads (0: torch's default)")
    base_images: int = Field(
        default=BASE_IMAGES,
        ge=0,
        le=500,
        description="Base training images mixed in so the model does not forget (0: reviews alone)",
    )
    min_gain: float = Field(
        default=MIN_GAIN,
        ge=0,
        le=1,
        description="Gain in the mean of F1/AJI/PQ on held-out reviewed tiles needed to register the new model",
    )
    tile_px: int = Field(
        default=TILE_PX, ge=64, le=2048, description="Side of a reviewed tile in model pixels; every third tile is held out"
    )


@asset(
    partitions_def=branches_partitions,
    group_name=REVIEWS_GROUP,
    kinds={"pytorch"},
    description="The branch's nucleus model fine-tuned, and its cell classifier refitted, from its current cell reviews; each registered in branch.yaml only when it scores better on held-out reviewed regions (else kept in <user>/models/<branch>/candidates/).",
)
@fails_clearly
def branch_nucleus_model(
    context: AssetExecutionContext, config: FineTuneConfig, user_files: UserFilesResource, segmentation: SegmentationResource
) -> MaterializeResult:
    user, branch = context.partition_key.split("/")
    settings = FineTuneSettings(steps=config.steps, batch=config.batch, crop=config.crop, lr=config.lr, threads=config.threads)
    try:
        base = default_training_data()
        # The models are scored on the tile grid process_slide segments with (the same resource's).
        outcome = finetune_branch(
            user_files.root_path,
            user,
            branch,
            settings,
            base,
            config.base_images,
            config.min_gain,
            base / "consep_train",
            config.tile_px,
            context.log.info,
            segmentation.tiling(),
        )
    except (TooFewReviewedTiles, *REVIEW_ERRORS) as error:
        raise Failure(description=str(error).splitlines()[0], allow_retries=False) from None
    for line in outcome.skipped_reviews:
        context.log.warning(f"skipped {line}")
    return MaterializeResult(
        metadata={
            "registered": outcome.registered,
            "verdict": outcome.why,
            "model_file": MetadataValue.path(outcome.model_file),
            "base_model": MetadataValue.path(outcome.base_model),
            "score_before": outcome.before["score"],
            "score_after": outcome.after["score"],
            "before": MetadataValue.json(outcome.before),
            "after": MetadataValue.json(outcome.after),
            "reviews": MetadataValue.json(outcome.reviews),
            "classifier_registered": bool(outcome.classifier.get("registered")),
            "classifier": MetadataValue.json(outcome.classifier),
            "report": MetadataValue.path(outcome.report),
        }
    )


finetune_from_reviews = define_asset_job(
    name="finetune_from_reviews",
    selection=[branch_nucleus_model],
    executor_def=in_process_executor,
    description="Fine-tune the branch's nucleus model from its reviews; the next runs of the branch use it when it is better.",
)

finetune_assets = [branch_nucleus_model]
finetune_jobs = [finetune_from_reviews]
