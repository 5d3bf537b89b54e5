"""How the lymphocyte rule's defaults were chosen: a grid over its three thresholds on CoNSeP's
training tiles (annotated outlines, measured at 0.5 µm/px), scored as inflammatory-vs-rest F1,
then the best few scored on the 5 held-out tiles.

    python benchmarks/lymphocyte_rule_grid.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from wsi_assets.cells.cell_classifier import FEATURE_COLUMNS
from wsi_assets.cells.lymphocyte_rule import LymphocyteRule
from wsi_assets.training.cell_classifier_training import typed_nuclei
from wsi_assets.training.split import HELD_OUT_CONSEP_TILES

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei_train" / "consep_train"


def main() -> None:
    nuclei = typed_nuclei(DATA)
    held = np.isin(nuclei.tiles, HELD_OUT_CONSEP_TILES)

    def columns(rows):
        return {name: nuclei.features[rows, i] for i, name in enumerate(FEATURE_COLUMNS)}

    def f1(rule, rows):
        called, truth = rule.matches(columns(rows)), nuclei.classes[rows] == "inflammatory"
        return 2 * np.sum(called & truth) / (called.sum() + truth.sum())

    grid = itertools.product([15, 20, 25, 30, 35, 45], [0.5, 0.6, 0.7, 0.75, 0.8, 0.85], [0.0, 0.1, 0.2, 0.3, 0.4])
    scored = sorted(((f1(LymphocyteRule(*values), ~held), values) for values in grid), reverse=True)
    print(
        f"inflammatory in training tiles: median area {np.median(columns(~held)['area_um2'][nuclei.classes[~held] == 'inflammatory']):.1f} µm²"
    )
    for score, values in scored[:5]:
        print(
            f"max_area_um2 {values[0]}, min_circularity {values[1]}, min_hematoxylin_od {values[2]}: "
            f"training F1 {score:.3f}, held-out F1 {f1(LymphocyteRule(*values), held):.3f}"
        )
    default = LymphocyteRule()
    print(f"defaults {default.as_dict()}: training F1 {f1(default, ~held):.3f}, held-out F1 {f1(default, held):.3f}")


if __name__ == "__main__":
    main()
