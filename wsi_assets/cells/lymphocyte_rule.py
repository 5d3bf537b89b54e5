"""The tunable lymphocyte rule: a nucleus is `inflammatory` when small, round and dark enough.

Labs tune it per run or per branch (`lymphocyte_rule:` in branch.yaml) and re-apply it to the
stored measurements with `classify_cells`, without segmenting again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from wsi_assets.core.quoting import short_repr

# What each threshold reads from the cell table.
RULE_COLUMNS = {"max_area_um2": "area_um2", "min_circularity": "nucleus_circularity", "min_hematoxylin_od": "nucleus_hematoxylin_od_mean"}
RULE_LIMITS = {"max_area_um2": (1.0, 500.0), "min_circularity": (0.0, 1.0), "min_hematoxylin_od": (0.0, 3.0)}


class BadRuleSetting(ValueError):
    """A lymphocyte rule setting that is unknown or out of range."""


@dataclass(frozen=True)
class LymphocyteRule:
    # Small, round and stained: the best of a grid search on CoNSeP's 22 training tiles
    # (inflammatory F1 0.62 there, 0.45 on the 5 held-out tiles; README, "Cell classes").
    # CoNSeP's annotated lymphocyte nuclei have a median area of 11.5 µm² at 0.5 µm/px.
    max_area_um2: float = 20.0
    min_circularity: float = 0.80
    min_hematoxylin_od: float = 0.10

    def matches(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """True for each cell the rule calls a lymphocyte; NaN measurements never match."""
        area = np.asarray(columns[RULE_COLUMNS["max_area_um2"]], np.float64)
        circularity = np.asarray(columns[RULE_COLUMNS["min_circularity"]], np.float64)
        stain = np.asarray(columns[RULE_COLUMNS["min_hematoxylin_od"]], np.float64)
        with np.errstate(invalid="ignore"):
            return (area <= self.max_area_um2) & (circularity >= self.min_circularity) & (stain >= self.min_hematoxylin_od)

    def classify(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """`inflammatory` where the rule matches, `other` elsewhere (the rule alone knows no other class)."""
        return np.where(self.matches(columns), "inflammatory", "other").astype(object)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_rule(data, source: str) -> LymphocyteRule:
    """A rule from a mapping (branch.yaml or run config); the defaults for keys left out."""
    if data is None:
        return LymphocyteRule()
    if not isinstance(data, dict):
        raise BadRuleSetting(f"{source}: lymphocyte_rule must be a mapping, e.g. 'lymphocyte_rule: {{max_area_um2: 45}}'")
    values = {}
    for key, value in data.items():
        if key not in RULE_LIMITS:
            raise BadRuleSetting(f"{source}: unknown lymphocyte_rule key {short_repr(key)}; known: {', '.join(RULE_LIMITS)}")
        low, high = RULE_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
            raise BadRuleSetting(f"{source}: lymphocyte_rule {key} = {short_repr(value)} must be a number from {low:g} to {high:g}")
        values[key] = float(value)
    return LymphocyteRule(**values)
