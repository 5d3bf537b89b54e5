"""Tracks of nuclei over time: consecutive time points linked by centroid distance with optimal assignment.

Between t-1 and t, nuclei closer than `max_distance_um` are candidate pairs (a k-d tree, never a
dense all-against-all matrix). Each connected group of candidates is solved by
`scipy.optimize.linear_sum_assignment` on the augmented cost matrix of LAP trackers (Jaqaman
et al. 2008, TrackMate): link cost = distance; ending a track or starting one costs the gate,
so a nucleus is left unlinked rather than matched to a far one. A linked nucleus continues
its track; any other starts a new one. Distances are in µm, Z scaled by its own voxel size.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

_FORBIDDEN = 1e12


def positions_um(table: pd.DataFrame, voxel_um: dict) -> np.ndarray:
    """(N, 3) centroids in µm (a missing size counts as 1, so voxels are then the unit)."""
    scale = [voxel_um.get(a) or 1.0 for a in "xyz"]
    return table[["centroid_x", "centroid_y", "centroid_z"]].to_numpy(np.float64) * np.asarray(scale)


def default_gate_um(table: pd.DataFrame, voxel_um: dict) -> float:
    """The median nucleus diameter (from volume or area): a nucleus moves less than its own width between frames."""
    if "volume_um3" in table and table["volume_um3"].notna().any():
        return float(np.cbrt(6 * table["volume_um3"].median() / math.pi))
    if "area_um2" in table and table["area_um2"].notna().any():
        return float(2 * math.sqrt(table["area_um2"].median() / math.pi))
    voxels = table["voxels"].median() if len(table) else 1.0
    return float(2 * math.sqrt(voxels / math.pi)) * (voxel_um.get("x") or 1.0)


def link(previous: np.ndarray, current: np.ndarray, max_distance: float) -> list[tuple[int, int]]:
    """Optimal (i in previous, j in current) links between two point sets, none longer than `max_distance`."""
    if len(previous) == 0 or len(current) == 0:
        return []
    pairs = cKDTree(previous).sparse_distance_matrix(cKDTree(current), max_distance, output_type="coo_matrix")
    n, m = len(previous), len(current)
    graph = coo_matrix((np.ones(pairs.nnz), (pairs.row, pairs.col + n)), shape=(n + m, n + m))
    _, component = connected_components(graph, directed=False)
    links: list[tuple[int, int]] = []
    by_component = pd.DataFrame({"i": pairs.row, "j": pairs.col, "d": pairs.data, "k": component[pairs.row]})
    for _, group in by_component.groupby("k", sort=False):
        rows, row_index = np.unique(group["i"].to_numpy(), return_inverse=True)
        cols, col_index = np.unique(group["j"].to_numpy(), return_inverse=True)
        a, b = len(rows), len(cols)
        cost = np.full((a + b, b + a), _FORBIDDEN)
        cost[row_index, col_index] = group["d"].to_numpy()
        cost[np.arange(a), b + np.arange(a)] = max_distance  # track ends
        cost[a + np.arange(b), np.arange(b)] = max_distance  # track starts
        cost[a:, b:] = cost[:a, :b].T  # lets the dummies pair off wherever real links are taken
        cost[a:, b:][cost[a:, b:] < _FORBIDDEN] = 0.0
        r, c = linear_sum_assignment(cost)
        real = (r < a) & (c < b)
        links.extend(zip(rows[r[real]].tolist(), cols[c[real]].tolist()))
    return links


def add_track_ids(table: pd.DataFrame, voxel_um: dict, max_distance_um: float | None = None) -> tuple[pd.DataFrame, dict]:
    """`table` (one row per nucleus per t) with a `track_id` column, and a summary of the tracks."""
    table = table.sort_values(["t", "label"], kind="stable").reset_index(drop=True)
    gate = max_distance_um if max_distance_um else default_gate_um(table, voxel_um)
    track = np.zeros(len(table), np.int64)
    points = positions_um(table, voxel_um)
    next_track = 1
    previous_rows = np.zeros(0, np.int64)
    by_t = table.groupby("t").indices
    for t in sorted(by_t):
        rows = np.asarray(by_t[t])
        for i, j in link(points[previous_rows], points[rows], gate):
            track[rows[j]] = track[previous_rows[i]]
        new = rows[track[rows] == 0]
        track[new] = np.arange(next_track, next_track + len(new))
        next_track += len(new)
        previous_rows = rows
    table["track_id"] = track
    lengths = table.groupby("track_id").size() if len(table) else pd.Series(dtype=np.int64)
    times = int(table["t"].nunique()) if len(table) else 0
    summary = {
        "tracks": len(lengths),
        "gate_um": round(gate, 3),
        "mean_length": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
        "median_length": float(lengths.median()) if len(lengths) else 0.0,
        "max_length": int(lengths.max()) if len(lengths) else 0,
        "full_length_tracks": int((lengths == times).sum()) if len(lengths) else 0,
        "length_histogram": {int(k): int(v) for k, v in lengths.value_counts().sort_index().items()},
    }
    return table, summary
