"""The lymphocyte rule's thresholds as settings: their defaults, their limits, and the check of a mapping of them.

Kept in core because branch.yaml's `lymphocyte_rule:` is checked when the file is read; the rule
that applies them to a cell table is `wsi_assets.cells.lymphocyte_rule`.
"""

from __future__ import annotations

import math

from wsi_assets.core.quoting import short_repr

# Small, round and stained: the best of a grid search on CoNSeP's 22 training tiles
# (inflammatory F1 0.62 there, 0.45 on the 5 held-out tiles; README, "Cell classes").
# CoNSeP's annotated lymphocyte nuclei have a median area of 11.5 µm² at 0.5 µm/px.
RULE_DEFAULTS = {"max_area_um2": 20.0, "min_circularity": 0.80, "min_hematoxylin_od": 0.10}
RULE_LIMITS = {"max_area_um2": (1.0, 500.0), "min_circularity": (0.0, 1.0), "min_hematoxylin_od": (0.0, 3.0)}


class BadRuleSetting(ValueError):
    """A lymphocyte rule setting that is unknown or out of range."""


def checked_thresholds(data, source: str) -> dict[str, float]:
    """Every threshold: those `data` (a mapping from branch.yaml or run config) sets, the defaults for the rest."""
    if data is None:
        return dict(RULE_DEFAULTS)
    if not isinstance(data, dict):
        raise BadRuleSetting(f"{source}: lymphocyte_rule must be a mapping, e.g. 'lymphocyte_rule: {{max_area_um2: 45}}'")
    values = dict(RULE_DEFAULTS)
    for key, value in data.items():
        if key not in RULE_LIMITS:
            raise BadRuleSetting(f"{source}: unknown lymphocyte_rule key {short_repr(key)}; known: {', '.join(RULE_LIMITS)}")
        low, high = RULE_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
            raise BadRuleSetting(
                f"{source}: lymphocyte_rule {key} = {short_repr(value)} must be a number from {low:g} to {high:g}"
            )
        values[key] = float(value)
    return values
