"""Instance-segmentation scores between a predicted and a true nucleus label map.

Label maps are integer (H,W) arrays, 0 = background, any positive ids (need not be
consecutive). Conventions where a ratio would be 0/0: a prediction with no instances has
precision 1 (nothing it said is wrong), a truth with no instances gives recall 1, and two
empty maps score 1 everywhere (they agree perfectly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Overlaps:
    """Pairwise overlaps of true (rows) and predicted (columns) instances.

    `true_ids`/`pred_ids` map row/column indices back to the original labels; `intersection`
    is sparse (only overlapping pairs are stored) and `iou` has the same sparsity pattern.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_areas: np.ndarray
    pred_areas: np.ndarray
    intersection: sparse.csr_matrix
    iou: sparse.csr_matrix


@dataclass(frozen=True)
class Matches:
    """One-to-one pairs (row/column indices into an `Overlaps`) with IoU above a threshold."""

    overlaps: Overlaps
    true_index: np.ndarray
    pred_index: np.ndarray
    iou: np.ndarray

    @property
    def tp(self) -> int:
        return int(self.iou.size)

    @property
    def fp(self) -> int:
        return int(self.overlaps.pred_ids.size - self.tp)

    @property
    def fn(self) -> int:
        return int(self.overlaps.true_ids.size - self.tp)


def compute_overlaps(pred: np.ndarray, true: np.ndarray) -> Overlaps:
    """Intersection and IoU of every overlapping (true, pred) pair, from one sparse contingency table."""
    pred, true = _check_pair(pred, true)
    true_ids, true_index = _compact_ids(true.ravel())
    pred_ids, pred_index = _compact_ids(pred.ravel())
    both = (true_index >= 0) & (pred_index >= 0)
    shape = (true_ids.size, pred_ids.size)
    intersection = sparse.coo_matrix(
        (np.ones(np.count_nonzero(both), np.int64), (true_index[both], pred_index[both])), shape=shape
    ).tocsr()
    intersection.sum_duplicates()
    true_areas = np.bincount(true_index[true_index >= 0], minlength=shape[0])
    pred_areas = np.bincount(pred_index[pred_index >= 0], minlength=shape[1])
    rows, cols = _nonzero_coords(intersection)
    inter = intersection.data.astype(np.float64)
    union = true_areas[rows] + pred_areas[cols] - inter
    iou = sparse.csr_matrix((inter / union, intersection.indices, intersection.indptr), shape=shape)
    return Overlaps(true_ids, pred_ids, true_areas, pred_areas, intersection, iou)


def match_instances(pred: np.ndarray, true: np.ndarray, thr: float = 0.5) -> Matches:
    """One-to-one matching of instances with IoU > `thr`.

    For thr >= 0.5 a match is unique by construction (two instances cannot both overlap a
    third by more than half its union); below 0.5 the pairing maximises total IoU.
    """
    overlaps = compute_overlaps(pred, true)
    rows, cols = _nonzero_coords(overlaps.iou)
    values = overlaps.iou.data
    keep = values > thr
    rows, cols, values = rows[keep], cols[keep], values[keep]
    if thr < 0.5 and values.size:
        rows, cols, values = _max_iou_assignment(rows, cols, values)
    order = np.argsort(rows, kind="stable")
    return Matches(overlaps, rows[order], cols[order], values[order])


def f1_at_iou(pred: np.ndarray, true: np.ndarray, thr: float = 0.5) -> dict[str, float]:
    """Detection counts and precision / recall / F1 with a match meaning IoU > `thr`."""
    m = match_instances(pred, true, thr)
    tp, fp, fn = m.tp, m.fp, m.fn
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def aggregated_jaccard_index(pred: np.ndarray, true: np.ndarray) -> float:
    """AJI (Kumar et al., IEEE TMI 2017).

    Each true nucleus is paired with the predicted one of highest IoU (a predicted nucleus may
    be paired several times, as in the original definition); intersections and unions of the
    pairs are summed, true nuclei with no overlap add their area to the union, and predicted
    nuclei never paired add theirs.
    """
    o = compute_overlaps(pred, true)
    if o.true_ids.size == 0 and o.pred_ids.size == 0:
        return 1.0
    rows, best, inter = _best_pred_per_true(o)
    union = o.true_areas[rows] + o.pred_areas[best] - inter
    unpaired_true = np.ones(o.true_ids.size, bool)
    unpaired_true[rows] = False
    unused_pred = np.ones(o.pred_ids.size, bool)
    unused_pred[best] = False
    total_union = union.sum() + o.true_areas[unpaired_true].sum() + o.pred_areas[unused_pred].sum()
    return float(inter.sum() / total_union) if total_union else 1.0


def panoptic_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Detection quality (F1 at IoU > 0.5), segmentation quality (mean IoU of matches), PQ = DQ * SQ."""
    m = match_instances(pred, true, 0.5)
    if m.tp + m.fp + m.fn == 0:
        return {"dq": 1.0, "sq": 1.0, "pq": 1.0}
    dq = m.tp / (m.tp + 0.5 * m.fp + 0.5 * m.fn)
    sq = float(m.iou.mean()) if m.tp else 0.0
    return {"dq": dq, "sq": sq, "pq": dq * sq}


def _check_pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and {true.shape}")
    for name, a in (("pred", pred), ("true", true)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} must be an integer label map, got {a.dtype}")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} must not contain negative labels")
    return pred, true


def _compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive ids present, and each pixel's index into them (-1 for background)."""
    labels = labels.astype(np.int64, copy=False)
    top = int(labels.max()) if labels.size else 0
    if top <= 4 * labels.size + 1024:
        # Dense id space (the usual case): a lookup table beats np.unique's sort.
        present = np.zeros(top + 1, bool)
        present[labels] = True
        present[0] = False
        ids = np.flatnonzero(present)
        lookup = np.full(top + 1, -1, np.int64)
        lookup[ids] = np.arange(ids.size)
        return ids, lookup[labels]
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] == 0:
        return ids[1:], inverse.astype(np.int64) - 1
    return ids, inverse.astype(np.int64)


def _nonzero_coords(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each stored entry, in `matrix.data` order."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64)


def _max_iou_assignment(rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one pairing among candidate pairs, solved on the candidates' submatrix only."""
    urows, r = np.unique(rows, return_inverse=True)
    ucols, c = np.unique(cols, return_inverse=True)
    cost = np.zeros((urows.size, ucols.size))
    cost[r, c] = -values
    ri, ci = linear_sum_assignment(cost)
    chosen = cost[ri, ci] < 0
    ri, ci = ri[chosen], ci[chosen]
    return urows[ri], ucols[ci], -cost[ri, ci]


def _best_pred_per_true(o: Overlaps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each true instance overlapping some prediction: its row, the column of its
    highest-IoU prediction (lowest column on ties) and their intersection area."""
    rows, cols = _nonzero_coords(o.iou)
    order = np.lexsort((cols, -o.iou.data, rows))
    rows, cols = rows[order], cols[order]
    first = np.ones(rows.size, bool)
    first[1:] = rows[1:] != rows[:-1]
    inter = o.intersection.data[order][first].astype(np.float64)
    return rows[first], cols[first], inter
