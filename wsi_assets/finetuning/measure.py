"""Time finetune_from_reviews on a synthetic branch whose drawn truth is the review (a few hundred cells).

    python -m wsi_assets.cli.measure_finetuning [--steps 150] [--threads 1] [--width 1024 --height 768]

Starts from the shipped nucleus model and classifier, mixes in the base data where ../shared is
present, and prints the seconds of each part and the before/after figures. Everything is written
to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import shapely

from wsi_assets.finetuning.from_reviews import finetune_branch
from wsi_assets.finetuning.nucleus_finetune import FineTuneSettings
from wsi_assets.reviews.review_files import cell_review_changes
from wsi_assets.reviews.version_store import import_review
from wsi_assets.slides.synthetic import (
    SyntheticSlideSpec,
    synthetic_nuclei,
    synthetic_nucleus_polygons,
    write_synthetic_slide,
)
from wsi_assets.training.defaults import default_training_data


def time_finetuning(
    steps: int = FineTuneSettings.steps,
    threads: int = 1,
    width: int = 1024,
    height: int = 768,
    log: Callable[[str], None] = print,
) -> None:
    """Fine-tune a fresh synthetic branch of `width` x `height` pixels, logging each part's seconds."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "user_files"
        spec = SyntheticSlideSpec(width=width, height=height, mpp=0.5, seed=3, tissue_fraction=0.9)
        (root / "lab/inputs/ft").mkdir(parents=True)
        write_synthetic_slide(root / "lab/inputs/ft/s1.svs", spec)
        nuclei = synthetic_nuclei(spec, 0, 0, spec.width, spec.height)
        features = [
            {
                "type": "Feature",
                "geometry": json.loads(shapely.to_geojson(shapely.Polygon(p))),
                "properties": {
                    "objectType": "detection",
                    "classification": "epithelial" if major * spec.mpp > 4.6 else "inflammatory",
                },
            }
            for p, major in zip(synthetic_nucleus_polygons(spec, nuclei), nuclei["semi_major"])
        ]
        upload = root / "lab/reviews/ft/s1.geojson"
        upload.parent.mkdir(parents=True)
        upload.write_text(json.dumps(features))
        import_review(root, "lab", "ft", upload, cell_review_changes)
        base = default_training_data()
        start = time.perf_counter()
        outcome = finetune_branch(
            root,
            "lab",
            "ft",
            FineTuneSettings(steps=steps, threads=threads),
            base,
            12,
            base_classes=base / "consep_train",
            log=lambda line: log(f"{time.perf_counter() - start:6.1f} s  {line}"),
        )
        log(
            f"{len(features)} reviewed cells; total {time.perf_counter() - start:.1f} s; nucleus model: {outcome.why}; {outcome.classifier['why']}"
        )
