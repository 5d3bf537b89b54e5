"""The post-processing (relabel, outlines, owned nuclei) as it was before issue 12, kept verbatim as
the yardstick the cheaper one must match bit for bit (wsi_assets_tests/test_postprocess_speed_parity.py)
and is timed against (benchmarks/postprocess_timing.py).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from wsi_assets.cells.outline_repair import valid_outlines
from wsi_assets.cells.table import NucleusTable


def reference_relabel(labels: np.ndarray) -> np.ndarray:
    labels = np.where(labels > 0, labels, 0)
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        return (inverse.reshape(labels.shape) + 1).astype(np.int32)
    return inverse.reshape(labels.shape).astype(np.int32)


def _reference_outline(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=cv2.contourArea)
    return largest[:, 0, :].astype(np.float32)


def reference_nuclei_from_labels(labels, origin_x=0.0, origin_y=0.0, scale_x=1.0, scale_y=1.0) -> NucleusTable:
    labels = np.asarray(labels)
    boxes = ndi.find_objects(labels)
    centroid_x, centroid_y, areas, polygons = [], [], [], []
    for index, box in enumerate(boxes):
        if box is None:
            continue
        mask = labels[box] == index + 1
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            continue
        top, left = box[0].start, box[1].start
        centroid_x.append(origin_x + (left + cols.mean() + 0.5) * scale_x)
        centroid_y.append(origin_y + (top + rows.mean() + 0.5) * scale_y)
        areas.append(rows.size * scale_x * scale_y)
        outline = _reference_outline(np.pad(mask, 1)) + np.array([left - 1 + 0.5, top - 1 + 0.5], np.float32)
        outline[:, 0] = origin_x + outline[:, 0] * scale_x
        outline[:, 1] = origin_y + outline[:, 1] * scale_y
        polygons.append(outline)
    if not polygons:
        return NucleusTable.empty()
    counts = [len(p) for p in polygons]
    # Issue 30: the traced outlines are then made valid polygons, the same step on both sides.
    offsets, vertices, _ = valid_outlines(
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), np.concatenate(polygons).astype(np.float32)
    )
    return NucleusTable(
        np.asarray(centroid_x, np.float64),
        np.asarray(centroid_y, np.float64),
        np.asarray(areas, np.float64),
        offsets,
        vertices,
    )


def reference_owned_nuclei(labels, tile, grid) -> NucleusTable:
    side = labels.shape[0]
    scale_x = tile.read_w / labels.shape[1]
    scale_y = tile.read_h / side
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    cut = np.isin(labels, edge_labels[edge_labels > 0])
    labels = np.where(cut, 0, labels)
    nuclei = reference_nuclei_from_labels(labels, tile.read_x, tile.read_y, scale_x, scale_y)
    return nuclei.select(tile.owns(nuclei.centroid_x, nuclei.centroid_y))


def assert_same_table(new: NucleusTable, old: NucleusTable) -> None:
    for field in ("centroid_x", "centroid_y", "area_pixels", "offsets", "vertices"):
        a, b = getattr(new, field), getattr(old, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert np.array_equal(a, b), field  # exact: no tolerance anywhere
        assert a.tobytes() == b.tobytes(), field  # and bit for bit (signed zeros, NaN payloads)
