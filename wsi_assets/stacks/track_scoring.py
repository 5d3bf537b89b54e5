"""How well nuclei were tracked, against known tracks: the fraction of true consecutive pairs linked correctly.

Each true nucleus is matched to the found nucleus nearest its centroid, within `max_distance_um`
(keep it under half the true nuclei's spacing, so no found nucleus matches two true ones). A true
pair (nucleus n at t and t+1) is linked correctly when both are matched and the two matches share
a `track_id`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


def match_to_truth(found: pd.DataFrame, truth: pd.DataFrame, voxel_um: dict, max_distance_um: float) -> pd.DataFrame:
    """truth with a `track_id` column: the matched nucleus's track (0 when unmatched)."""
    scale = np.array([voxel_um.get(a) or 1.0 for a in "xyz"])
    columns = ["centroid_x", "centroid_y", "centroid_z"]
    out = truth.copy()
    out["track_id"] = 0
    for t, true_rows in truth.groupby("t").indices.items():
        rows = found.index[found["t"] == t]
        if len(rows) == 0:
            continue
        distance, nearest = cKDTree(found.loc[rows, columns].to_numpy() * scale).query(
            truth.iloc[true_rows][columns].to_numpy() * scale
        )
        near = distance <= max_distance_um
        out.iloc[np.asarray(true_rows)[near], out.columns.get_loc("track_id")] = found.loc[
            rows[nearest[near]], "track_id"
        ].to_numpy()
    return out


def correct_link_fraction(found: pd.DataFrame, truth: pd.DataFrame, voxel_um: dict, max_distance_um: float) -> dict:
    """{"pairs": true consecutive pairs, "correct": linked correctly, "fraction", "matched": true nuclei found}."""
    matched = match_to_truth(found.reset_index(drop=True), truth, voxel_um, max_distance_um)
    by_key = matched.set_index(["nucleus", "t"])["track_id"]
    pairs = correct = 0
    for (nucleus, t), track in by_key.items():
        if (nucleus, t + 1) not in by_key.index:
            continue
        pairs += 1
        correct += int(track != 0 and by_key[(nucleus, t + 1)] == track)
    return {
        "pairs": pairs,
        "correct": correct,
        "fraction": round(correct / pairs, 4) if pairs else None,
        "matched": round(float((matched["track_id"] != 0).mean()), 4),
    }
