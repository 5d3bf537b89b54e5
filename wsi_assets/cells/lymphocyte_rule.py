"""The tunable lymphocyte rule: a nucleus is `inflammatory` when small, round and dark enough.

Labs tune it per run or per branch (`lymphocyte_rule:` in branch.yaml) and re-apply it to the
stored measurements with `classify_cells`, without segmenting again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The thresholds' defaults, limits and check live in core, where branch.yaml is read; re-exported here.
from wsi_assets.core.lymphocyte_thresholds import RULE_DEFAULTS, RULE_LIMITS, BadRuleSetting, checked_thresholds

# What each threshold reads from the cell table.
RULE_COLUMNS = {
    "max_area_um2": "area_um2",
    "min_circularity": "nucleus_circularity",
    "min_hematoxylin_od": "nucleus_hematoxylin_od_mean",
}
__all__ = ["RULE_COLUMNS", "RULE_LIMITS", "BadRuleSetting", "LymphocyteRule", "parse_rule"]


@dataclass(frozen=True)
class LymphocyteRule:
    # Why these defaults: core.lymphocyte_thresholds.
    max_area_um2: float = RULE_DEFAULTS["max_area_um2"]
    min_circularity: float = RULE_DEFAULTS["min_circularity"]
    min_hematoxylin_od: float = RULE_DEFAULTS["min_hematoxylin_od"]

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
    return LymphocyteRule(**checked_thresholds(data, source))
