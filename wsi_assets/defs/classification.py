"""The per-slide classification asset: a class for every stored nucleus, and the class mix check.

It reads the stored measurements and never segments, so `classify_cells` re-applies a tuned
lymphocyte rule or another classifier in seconds.
"""

import json

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from wsi_assets.cells.classification import (
    class_figures,
    classification_method,
    classify_stored_cells,
)
from wsi_assets.cells.classes import CLASS_COLUMN
from wsi_assets.cells.lymphocyte_density import lymphocyte_density
from wsi_assets.cells.lymphocyte_rule import parse_rule
from wsi_assets.cells.nucleus_typer import stored_cnn
from wsi_assets.cells.store import read_cell_columns, stored_embedding
from wsi_assets.core.atomic import atomic_output, write_bytes_atomic, write_text_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.images import markdown_image
from wsi_assets.core.keys import SlideKey
from wsi_assets.defs.asset_factories import partition_asset
from wsi_assets.defs.errors import TRANSIENT_RETRY
from wsi_assets.defs.partitions import slides_partitions
from wsi_assets.defs.resources import UserFilesResource
from wsi_assets.defs.results import run_set
from wsi_assets.defs.segmentation import cell_segmentation
from wsi_assets.finetuning.branch_files import NAMED_CLASSIFIERS
from wsi_assets.finetuning.branch_model import resolve_branch_classifier
from wsi_assets.quality.class_mix import class_mix, class_overlay
from wsi_assets.quality.lymphocyte_heatmap import lymphocyte_heatmap
from wsi_assets.slides.stored import load_slide_info, load_tissue_mask

CLASSIFICATION_GROUP = "classification"
classification_asset = partition_asset(slides_partitions, CLASSIFICATION_GROUP)
CLASSES_JSON = "classes.json"
CLASS_OVERLAY = "class_overlay.jpg"
LYMPHOCYTE_HEATMAP = "lymphocyte_heatmap.jpg"


class ClassificationConfig(Config):
    classifier: str = Field(
        default="",
        description='"default" (shipped classifier), "rule" (lymphocyte rule), "cnn" (the network\'s probabilities stored at segmentation), "forest+cnn" (their mean with the shipped classifier\'s), or a classifier file in the branch folder; empty = branch.yaml',
    )
    max_area_um2: float = Field(
        default=0.0, description="Lymphocyte rule: largest nucleus area in µm² (0 = branch.yaml or the default)"
    )
    min_circularity: float = Field(
        default=-1.0, description="Lymphocyte rule: smallest circularity, 0-1 (negative = branch.yaml or the default)"
    )
    min_hematoxylin_od: float = Field(
        default=-1.0, description="Lymphocyte rule: smallest mean haematoxylin OD (negative = branch.yaml or the default)"
    )

    def rule_overrides(self) -> dict:
        chosen = {
            "max_area_um2": self.max_area_um2 if self.max_area_um2 > 0 else None,
            "min_circularity": self.min_circularity if self.min_circularity >= 0 else None,
            "min_hematoxylin_od": self.min_hematoxylin_od if self.min_hematoxylin_od >= 0 else None,
        }
        return {key: value for key, value in chosen.items() if value is not None}


@classification_asset(
    deps=[cell_segmentation],
    kinds={"scikitlearn", "parquet"},
    retry_policy=TRANSIENT_RETRY,
    description="A class (inflammatory, epithelial, spindle, other) for every nucleus, with counts and densities per mm² of tissue.",
)
def cell_classification(
    context: AssetExecutionContext, config: ClassificationConfig, user_files: UserFilesResource
) -> MaterializeResult:
    key = SlideKey.parse(context.partition_key)
    settings = branch_settings_for(user_files.root_path, key.user, key.branch)
    outputs = run_set(context, user_files, "cells")
    cells = outputs.require(outputs.cells_parquet, cell_segmentation.key.to_user_string())
    info, tissue = load_slide_info(outputs), load_tissue_mask(outputs)
    rule = parse_rule({**(settings.lymphocyte_rule or {}), **config.rule_overrides()}, "run config")
    choice = config.classifier or settings.classifier
    classifier_path = None
    if choice not in NAMED_CLASSIFIERS:
        # A branch's own classifier: registered by finetune_from_reviews, or the user's in its upload folder; never outside the user's files.
        classifier_path = resolve_branch_classifier(user_files.root_path, key.user, key.branch, choice)
    method = classification_method(choice, rule, classifier_path, stored_embedding(cells), stored_cnn(cells))
    if "cnn_fallback" in method.details:
        context.log.warning(f"{key}: classifier {choice}: {method.details['cnn_fallback']}")
    with atomic_output(cells) as temporary:
        counts = classify_stored_cells(cells, temporary, method, info.mpp)
    columns = read_cell_columns(cells, ["centroid_x", "centroid_y", CLASS_COLUMN])
    density = lymphocyte_density(columns["centroid_x"], columns["centroid_y"], columns[CLASS_COLUMN], tissue)
    figures = {**class_figures(counts, tissue.area_mm2), **density.figures(), **method.as_dict()}
    write_text_atomic(outputs.segmentation_dir / CLASSES_JSON, json.dumps(figures, indent=2))
    overlay = class_overlay(user_files.slide_file(key), cells, info)
    write_bytes_atomic(outputs.segmentation_dir / CLASS_OVERLAY, overlay)
    heatmap = lymphocyte_heatmap(
        outputs.require(outputs.thumbnail, "slide_metadata").read_bytes(), density, info.width, info.height, tissue.mask
    )
    write_bytes_atomic(outputs.segmentation_dir / LYMPHOCYTE_HEATMAP, heatmap)
    context.log.info(
        f"{key}: classes by {method.name}: {figures['class_counts']}; {figures['lymphocytes_per_mm2']} lymphocytes/mm²"
    )
    return MaterializeResult(
        metadata={
            "method": method.name,
            "lymphocytes_per_mm2": figures["lymphocytes_per_mm2"],
            "lymphocytes_per_mm2_epithelium": figures["lymphocytes_per_mm2_epithelium"],
            "lymphocytes_per_mm2_stroma": figures["lymphocytes_per_mm2_stroma"],
            **{f"{name}_per_mm2": value for name, value in figures["class_densities_per_mm2"].items()},
            **{f"{name}_count": value for name, value in figures["class_counts"].items()},
            "settings": MetadataValue.json(method.as_dict()),
            "classes": MetadataValue.md(markdown_image(overlay, f"{key} nucleus classes")),
            "lymphocyte_heatmap": MetadataValue.md(markdown_image(heatmap, f"{key} lymphocytes per mm²")),
        }
    )


@asset_check(
    asset=cell_classification,
    partitions_def=slides_partitions,
    description="The class mix is one real tissue can have (not nearly everything one class or 'other').",
)
def class_mix_plausible(context: AssetCheckExecutionContext, user_files: UserFilesResource) -> AssetCheckResult:
    outputs = user_files.run_outputs(SlideKey.parse(context.partition_key), context.run.run_id)
    figures = json.loads((outputs.segmentation_dir / CLASSES_JSON).read_text())
    outcome = class_mix(figures, figures.get("method", "default"))
    return AssetCheckResult(
        passed=outcome.passed, severity=AssetCheckSeverity.WARN, metadata={"result": outcome.description, **outcome.metadata}
    )


classification_assets = [cell_classification]
classification_checks = [class_mix_plausible]
