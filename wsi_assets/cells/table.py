"""Instance label maps to per-nucleus rows: centroid, area and outline polygon."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi


@dataclass
class NucleusTable:
    """Nuclei as columns; polygons ragged (`offsets` into `vertices`), all in level-0 px."""

    centroid_x: np.ndarray  # float64 (N,)
    centroid_y: np.ndarray  # float64 (N,)
    area_pixels: np.ndarray  # float64 (N,), level-0 px²
    offsets: np.ndarray  # int64 (N+1,)
    vertices: np.ndarray  # float32 (M, 2) x,y

    def __len__(self) -> int:
        return len(self.centroid_x)

    @property
    def point_counts(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int32)

    def polygon(self, index: int) -> np.ndarray:
        return self.vertices[self.offsets[index] : self.offsets[index + 1]]

    def select(self, keep: np.ndarray) -> "NucleusTable":
        keep = np.asarray(keep, bool)
        counts = np.diff(self.offsets)[keep]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        vertex_keep = np.repeat(keep, np.diff(self.offsets))
        return NucleusTable(
            self.centroid_x[keep], self.centroid_y[keep], self.area_pixels[keep], offsets, self.vertices[vertex_keep]
        )

    @classmethod
    def empty(cls) -> "NucleusTable":
        return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(1, np.int64), np.zeros((0, 2), np.float32))

    @classmethod
    def concatenate(cls, tables: list["NucleusTable"]) -> "NucleusTable":
        tables = [t for t in tables if len(t)]
        if not tables:
            return cls.empty()
        counts = np.concatenate([np.diff(t.offsets) for t in tables])
        return cls(
            np.concatenate([t.centroid_x for t in tables]),
            np.concatenate([t.centroid_y for t in tables]),
            np.concatenate([t.area_pixels for t in tables]),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate([t.vertices for t in tables]),
        )


def _outline(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=cv2.contourArea)
    return largest[:, 0, :].astype(np.float32)


def nuclei_from_labels(labels: np.ndarray, origin_x: float = 0.0, origin_y: float = 0.0, scale_x: float = 1.0, scale_y: float = 1.0) -> NucleusTable:
    """One row per label of `labels`, mapped to level-0 as origin + (pixel centre) * scale.

    Pixel (c, r) of the label map covers level-0 [origin + c*scale, origin + (c+1)*scale).
    """
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
        outline = _outline(np.pad(mask, 1)) + np.array([left - 1 + 0.5, top - 1 + 0.5], np.float32)
        outline[:, 0] = origin_x + outline[:, 0] * scale_x
        outline[:, 1] = origin_y + outline[:, 1] * scale_y
        polygons.append(outline)
    if not polygons:
        return NucleusTable.empty()
    counts = [len(p) for p in polygons]
    return NucleusTable(
        np.asarray(centroid_x, np.float64),
        np.asarray(centroid_y, np.float64),
        np.asarray(areas, np.float64),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.concatenate(polygons).astype(np.float32),
    )
