"""Model cells paired with reviewer cells: centroids within a radius (as HoVer-Net's evaluation), then IoU per pair.

Pairs are an optimal assignment on centroid distance, solved per connected group of cells that
lie within the radius of each other (groups are small, so this stays fast on whole slides).
A pair whose outlines overlap with IoU below 0.5 is a reshaped cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

RESHAPED_IOU = 0.5


@dataclass(frozen=True)
class CellPairs:
    model: np.ndarray  # indices into the model's cells, one per pair
    reviewer: np.ndarray  # indices into the reviewer's cells
    iou: np.ndarray  # outline IoU of each pair
    model_only: np.ndarray  # model cells the reviewer deleted
    reviewer_only: np.ndarray  # cells the reviewer added


def pair_by_centroid(model_xy: np.ndarray, reviewer_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (model, reviewer) of the assignment that pairs the most cells within `radius` at the least total distance."""
    model_xy, reviewer_xy = np.asarray(model_xy, float).reshape(-1, 2), np.asarray(reviewer_xy, float).reshape(-1, 2)
    if len(model_xy) == 0 or len(reviewer_xy) == 0:
        return np.empty(0, int), np.empty(0, int)
    # query_ball_tree rather than sparse_distance_matrix: a sparse matrix drops pairs at distance 0.
    neighbours = cKDTree(model_xy).query_ball_tree(cKDTree(reviewer_xy), radius)
    rows = np.repeat(np.arange(len(model_xy)), [len(n) for n in neighbours])
    cols = np.fromiter((j for n in neighbours for j in n), int, count=len(rows))
    if len(rows) == 0:
        return np.empty(0, int), np.empty(0, int)
    m, r = len(model_xy), len(reviewer_xy)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols + m)), shape=(m + r, m + r))
    _, group = connected_components(graph, directed=False)
    pairs_m, pairs_r = [], []
    distance = np.linalg.norm(model_xy[rows] - reviewer_xy[cols], axis=1)
    order = np.argsort(group[rows], kind="stable")
    rows, cols, dist, groups = rows[order], cols[order], distance[order], group[rows][order]
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for g_rows, g_cols, g_dist in zip(np.split(rows, bounds), np.split(cols, bounds), np.split(dist, bounds)):
        us, ui = np.unique(g_rows, return_inverse=True)
        vs, vi = np.unique(g_cols, return_inverse=True)
        # Unpaired costs more than any pair within the radius: the assignment first maximises pairs.
        cost = np.full((len(us), len(vs)), 1e6 + radius)
        cost[ui, vi] = g_dist
        a, b = linear_sum_assignment(cost)
        keep = cost[a, b] <= radius
        pairs_m.extend(us[a[keep]])
        pairs_r.extend(vs[b[keep]])
    return np.asarray(pairs_m, int), np.asarray(pairs_r, int)


def outline_iou(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if len(a) == 0:
        return np.empty(0)
    inter = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_cells(model_polygons, model_xy, reviewer_polygons, reviewer_xy, radius: float) -> CellPairs:
    pm, pr = pair_by_centroid(model_xy, reviewer_xy, radius)
    iou = outline_iou([model_polygons[i] for i in pm], [reviewer_polygons[i] for i in pr])
    model_only = np.setdiff1d(np.arange(len(model_polygons)), pm)
    reviewer_only = np.setdiff1d(np.arange(len(reviewer_polygons)), pr)
    return CellPairs(pm, pr, iou, model_only, reviewer_only)
