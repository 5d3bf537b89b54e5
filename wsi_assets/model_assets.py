"""Model assets: train the nucleus model from labelled images, and score a model on labelled images."""


from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from wsi_assets.training import DEFAULT_DATA

TRAINED = "trained"


class NucleiModelConfig(Config):
    data_folder: str = Field(default=str(DEFAULT_DATA), description="Labelled folder (manifest.csv, or images/ + labels/)")
    commercial_only: bool = Field(default=False, description="Train only on images whose licence allows commercial use")
    steps: int = Field(default=2000, description="Optimiser steps of 16 crops of 128² (ignored when epochs > 0)")
    epochs: float = Field(default=0.0, description="Passes over the training pixels; 0 = use steps")
    output_path: str = Field(default="models/nuclei_unet.pt", description="Where the TorchScript file and its model card go")
    version: str = Field(default="", description="Model version in the card; empty = UTC timestamp")
    device: str = Field(default="auto", description="auto (cuda if present), cpu or cuda")
    threads: int = Field(default=1, description="CPU threads for torch (0 = torch's default)")
    seed: int = 0
    stain_jitter: float = Field(default=0.15, description="Colour augmentation strength; above 0.15 it also shifts hue")
    scale_jitter: float = Field(default=1.25, description="Training crops are zoomed by up to this factor either way")


@asset(
    group_name="models",
    kinds={"pytorch"},
    description="The nucleus segmentation model trained from a labelled folder: a TorchScript file with its model card.",
)
def nuclei_model(context: AssetExecutionContext, config: NucleiModelConfig) -> MaterializeResult:
    from wsi_assets.training.train import TrainConfig, train

    out = Path(config.output_path).expanduser().resolve()
    card = train(
        TrainConfig(
            data=Path(config.data_folder), out=out, commercial_only=config.commercial_only, epochs=config.epochs,
            steps=config.steps, seed=config.seed, device=config.device, threads=config.threads, version=config.version,
            stain_jitter=config.stain_jitter, scale_jitter=config.scale_jitter,
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
    data_folder: str = Field(default=str(DEFAULT_DATA), description="Labelled folder; for nuclei_train only the held-out split is scored")
    data_mpp: float = Field(default=0.0, description="µm/px of the images of a folder without manifest.csv")
    device: str = "auto"


@asset(
    group_name="models",
    deps=[nuclei_model],
    kinds={"pytorch"},
    description="F1@0.5, AJI and PQ of a nucleus model on the held-out split (or any labelled folder), with an overlay.",
)
def nuclei_model_evaluation(context: AssetExecutionContext, config: EvaluationConfig) -> MaterializeResult:
    import numpy as np

    from wsi_assets.segmenter import DEFAULT, get_segmenter
    from wsi_assets.training.evaluate import labelled_images, overlay, score, summarise
    from wsi_assets.ui_images import fit_within, markdown_image, small_jpeg

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
    images = labelled_images(Path(config.data_folder), config.data_mpp or None)
    context.log.info(f"scoring {segmenter.name} v{segmenter.version} on {len(images)} images from {config.data_folder}")
    scores, predictions = score(segmenter, images)
    table = summarise(scores)
    panels = []
    for item in images[:4]:
        drawn = overlay(item.rgb, predictions[f"{item.dataset}/{item.stem}"], item.labels)
        panels.append(fit_within(drawn, 256))
    height = max(p.shape[0] for p in panels)
    strip = np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels], axis=1)
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
            "per_dataset": MetadataValue.md("```\n" + table.to_string(float_format=lambda v: f"{v:.3f}") + "\n```"),
            "overlay": MetadataValue.md(markdown_image(small_jpeg(strip, 1024), "predicted (yellow) and true (green) outlines")),
        }
    )


model_assets = [nuclei_model, nuclei_model_evaluation]
