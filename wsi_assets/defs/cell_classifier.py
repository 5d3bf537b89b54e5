"""The cell-type classifier asset: retrain it from typed nuclei, scored per class on held-out tiles."""

from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from wsi_assets.training import defaults

CELL_CLASSIFIER_GROUP = "cell_classifier"


class CellClassifierConfig(Config):
    data_folder: str = Field(
        default="",
        description="Folder with images/, labels/ and types.csv (CoNSeP's layout); empty = nuclei_train/consep_train of the shared data",
    )
    output_path: str = Field(
        default="cell_classifier.npz",
        description="Where the classifier and its model card go; a relative path is under $WSI_MODEL_DIR (default $DAGSTER_HOME/models)",
    )
    held_out_tiles: list[str] = Field(
        default_factory=list, description="Whole tiles scored and never trained on; empty = the project's held-out CoNSeP tiles"
    )
    outlines: str = Field(
        default="learned",
        description='Whose outlines are measured: a segmenter ("learned", "classical") paired to the annotated types, or "annotated"',
    )
    trees: int = Field(default=60, description="Trees in the forest (the shipped one has 60: 0.63 MB)")
    seed: int = 0


@asset(
    group_name=CELL_CLASSIFIER_GROUP,
    kinds={"scikitlearn", "numpy"},
    description="The cell-type classifier (random forest on nucleus measurements) trained from typed nuclei, with its model card and per-class F1 on held-out tiles.",
)
def cell_classifier(context: AssetExecutionContext, config: CellClassifierConfig) -> MaterializeResult:
    from wsi_assets.training.cell_classifier_training import HELD_OUT_CONSEP_TILES, train_cell_classifier

    folder = Path(config.data_folder).expanduser() if config.data_folder else defaults.default_training_data() / "consep_train"
    out = defaults.resolve_model_path(config.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    held_out = tuple(config.held_out_tiles) or HELD_OUT_CONSEP_TILES
    context.log.info(f"training the cell classifier from {folder}, holding out {', '.join(held_out)}")
    card = train_cell_classifier(folder, out, held_out, trees=config.trees, seed=config.seed, outlines=config.outlines)
    scores = card["validation"]["per_class_f1"]
    context.log.info(f"held-out per-class F1: {scores}")
    return MaterializeResult(
        metadata={
            "classifier_file": MetadataValue.path(str(out)),
            "file_mb": round(out.stat().st_size / 1e6, 2),
            "training_nuclei": card["data"]["training_nuclei"],
            "held_out_nuclei": card["data"]["held_out_nuclei"],
            "accuracy": card["validation"]["accuracy"],
            **{f"f1_{name}": value for name, value in scores.items()},
            "model_card": MetadataValue.json(card),
        }
    )


cell_classifier_assets = [cell_classifier]
