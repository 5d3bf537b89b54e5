"""Model assets: train the nucleus model from labelled images, and score a model on labelled images."""

from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from wsi_assets.defs.metadata_tables import metadata_table
from wsi_assets.training import defaults

TRAINED = "trained"
MODELS_GROUP = "models"
DATA_FOLDER_HELP = (
    "Labelled folder (manifest.csv, or images/ + labels/); empty = $WSI_SHARED_DATA/nuclei_train or ../shared/data/nuclei_train"
)


def _data_folder(configured: str) -> Path:
    return Path(configured).expanduser() if configured else defaults.default_training_data()


class NucleiModelConfig(Config):
    data_folder: str = Field(default="", description=DATA_FOLDER_HELP)
    commercial_only: bool = Field(default=False, description="Train only on images whose licence allows commercial use")
    steps: int = Field(
        default=defaults.STEPS,
        description=f"Optimiser steps of {defaults.BATCH} crops of {defaults.CROP}² (ignored when epochs > 0)",
    )
    epochs: float = Field(default=0.0, description="Passes over the training pixels; 0 = use steps")
    output_path: str = Field(
        default=defaults.MODEL_FILE_NAME,
        description="Where the TorchScript file and its model card go; a relative path is under $WSI_MODEL_DIR (default $DAGSTER_HOME/models)",
    )
    version: str = Field(default="", description="Model version in the card; empty = UTC timestamp")
    device: str = Field(default="auto", description="auto (cuda if present), cpu or cuda")
    threads: int = Field(default=1, description="CPU threads for torch (0 = torch's default)")
    seed: int = 0
    stain_jitter: float = Field(
        default=defaults.STAIN_JITTER,
        description=f"Colour augmentation strength; above {defaults.BASE_STAIN_JITTER} it also shifts hue",
    )
    scale_jitter: float = Field(
        default=defaults.SCALE_JITTER, description="Training crops are zoomed by up to this factor either way"
    )


@asset(
    group_name=MODELS_GROUP,
    kinds={"pytorch"},
    description="The nucleus segmentation model trained from a labelled folder: a TorchScript file with its model card.",
)
def nuclei_model(context: AssetExecutionContext, config: NucleiModelConfig) -> MaterializeResult:
    from wsi_assets.training.train import TrainConfig, train

    out = defaults.resolve_model_path(config.output_path)
    card = train(
        TrainConfig(
            data=_data_folder(config.data_folder),
            out=out,
            commercial_only=config.commercial_only,
            epochs=config.epochs,
            steps=config.steps,
            seed=config.seed,
            device=config.device,
            threads=config.threads,
            version=config.version,
            stain_jitter=config.stain_jitter,
            scale_jitter=config.scale_jitter,
        ),
        log=context.log.info,
    )
    return MaterializeResult(
        metadata={
            "model_file": MetadataValue.path(str(out)),
            "name": card["name"],
            "version": card["version"],
            "mpp": card["mpp"],
            "training_images": card["training"]["images"],
            "licences": ", ".join(card["training"]["licences"]),
            "commercial_use_ok": card["training"]["commercial_use_ok"],
            "training_seconds": card["training"]["seconds"],
            "file_mb": round(out.stat().st_size / 1e6, 2),
        }
    )


class EvaluationConfig(Config):
    model: str = Field(
        default=TRAINED,
        description='"trained" (the latest nuclei_model file), "learned" (shipped), "classical", or a TorchScript path',
    )
    model_mpp: float = Field(default=0.0, description="µm/px of a model file without a model card")
    data_folder: str = Field(default="", description=DATA_FOLDER_HELP + "; for nuclei_train only the held-out split is scored")
    data_mpp: float = Field(default=0.0, description="µm/px of the images of a folder without manifest.csv")
    device: str = "auto"


@asset(
    group_name=MODELS_GROUP,
    deps=[nuclei_model],
    kinds={"pytorch"},
    description="F1@0.5, AJI and PQ of a nucleus model on the held-out split (or any labelled folder), with an overlay.",
)
def nuclei_model_evaluation(context: AssetExecutionContext, config: EvaluationConfig) -> MaterializeResult:
    from wsi_assets.core.images import markdown_image, small_jpeg
    from wsi_assets.segmentation.registry import DEFAULT, get_segmenter
    from wsi_assets.training.evaluate import labelled_images, overlay_strip, score, summarise

    model = config.model
    if model == TRAINED:
        event = context.instance.get_latest_materialization_event(AssetKey("nuclei_model"))
        entry = event.asset_materialization.metadata.get("model_file") if event and event.asset_materialization else None
        if entry is None:
            context.log.warning("nuclei_model was never materialized: scoring the default segmenter instead")
            model = DEFAULT
        else:
            model = str(entry.value)
    segmenter = get_segmenter(model, device=config.device, mpp=config.model_mpp)
    folder = _data_folder(config.data_folder)
    images = labelled_images(folder, config.data_mpp or None)
    context.log.info(f"scoring {segmenter.name} v{segmenter.version} on {len(images)} images from {folder}")
    scores, predictions = score(segmenter, images)
    table = summarise(scores)
    strip = overlay_strip(images, predictions)
    overall = table.loc["all"]
    context.log.info(f"F1@0.5 {overall['F1@0.5']:.3f}, AJI {overall['AJI']:.3f}, PQ {overall['PQ']:.3f}")
    return MaterializeResult(
        metadata={
            "model": f"{segmenter.name} v{segmenter.version}",
            "model_source": str(model),
            "images": len(images),
            "f1_at_0_5": float(overall["F1@0.5"]),
            "aji": float(overall["AJI"]),
            "pq": float(overall["PQ"]),
            # A table, not markdown: dataset names are folder names of the labelled set, shown as typed.
            "per_dataset": metadata_table(
                [{"dataset": str(name), **{c: round(float(v), 3) for c, v in row.items()}} for name, row in table.iterrows()],
                ["dataset", *map(str, table.columns)],
            ),
            "overlay": MetadataValue.md(markdown_image(small_jpeg(strip, 1024), "predicted (yellow) and true (green) outlines")),
        }
    )


model_assets = [nuclei_model, nuclei_model_evaluation]
