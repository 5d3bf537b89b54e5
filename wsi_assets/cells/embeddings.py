"""Each nucleus's embedding: the nucleus network's own decoder activations read at its centroid.

The 12 measurements say little about what a nucleus is; the U-Net that found it has looked at
its texture and its neighbourhood. Reading the decoder's 1/4 and 1/8 resolution levels (64 + 128
channels for this project's models) at each nucleus centroid gives the cell classifier that view:
on the held-out CoNSeP tiles it raised inflammatory F1 from 0.50 to 0.62 and epithelial from
0.50 to 0.66 (`benchmarks/classifier_network_features.py`, RESULTS.md).

A segmenter that can give them has `segment_batch_with_embeddings`; the maps come back per tile
and are pooled in the same per-tile step that traces outlines and measures, so a slide's
embeddings stream to disk with the rest. An embedding only means something to a classifier
trained on the same network: `identity` names it, and the cell table and the classifier both
carry that name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMBEDDING_COLUMN = "embedding"  # the cell table's fixed-size list<float16> column
EMBEDDING_KEY = "wsi_assets_embedding"  # the cell table's metadata key: which network's embedding
EMBEDDING_DTYPE = np.float16  # 2 bytes a number: 384 bytes a nucleus for 192 channels


@dataclass(frozen=True)
class EmbeddingMaps:
    """One tile's decoder levels: `levels[k]` is (C_k, ceil(H/s_k), ceil(W/s_k)) for stride `strides[k]`."""

    levels: tuple[np.ndarray, ...]
    strides: tuple[int, ...]

    @property
    def width(self) -> int:
        return sum(level.shape[0] for level in self.levels)


def compact(maps: EmbeddingMaps) -> EmbeddingMaps:
    """The maps as float16, the precision the embedding is stored at."""
    return EmbeddingMaps(tuple(np.asarray(level, EMBEDDING_DTYPE) for level in maps.levels), maps.strides)


def embedding_identity(name: str, version: str, card_embedding: dict) -> dict:
    """What makes two embeddings comparable: the network (name, version) and its levels."""
    return {
        "model": str(name),
        "version": str(version),
        "strides": [int(s) for s in card_embedding["strides"]],
        "channels": [int(c) for c in card_embedding["channels"]],
        "width": int(sum(card_embedding["channels"])),
    }


def same_embedding(a: dict | None, b: dict | None) -> bool:
    """True when both name the same network and levels (a classifier may then read the other's embeddings)."""
    if not a or not b:
        return False
    keys = ("model", "version", "strides", "channels")
    return all(a.get(k) == b.get(k) for k in keys)


def _bilinear(level: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, C) values of a (C, h, w) map at fractional cell coordinates, edges clamped."""
    channels, height, width = level.shape
    u = np.clip(u, 0.0, width - 1.0)
    v = np.clip(v, 0.0, height - 1.0)
    u0 = np.floor(u).astype(np.intp)
    v0 = np.floor(v).astype(np.intp)
    u1 = np.minimum(u0 + 1, width - 1)
    v1 = np.minimum(v0 + 1, height - 1)
    fu = (u - u0).astype(np.float32)[:, None]
    fv = (v - v0).astype(np.float32)[:, None]
    flat = level.reshape(channels, -1)  # one gather per corner; float16 maps are weighted in float32

    def corner(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return flat[:, row * width + col].T.astype(np.float32)

    top = corner(v0, u0) * (1 - fu) + corner(v0, u1) * fu
    bottom = corner(v1, u0) * (1 - fu) + corner(v1, u1) * fu
    return top * (1 - fv) + bottom * fv


def embeddings_at(maps: EmbeddingMaps, centroid_x: np.ndarray, centroid_y: np.ndarray) -> np.ndarray:
    """(N, width) float16 embeddings at centroids given in label-map pixels (pixel centres at +0.5).

    A level of stride s holds cell j over pixels [j*s, (j+1)*s), its centre at (j + 0.5) * s, so
    a centroid x sits at cell coordinate x / s - 0.5 (torch's grid_sample, align_corners=False).
    """
    centroid_x = np.asarray(centroid_x, np.float64)
    centroid_y = np.asarray(centroid_y, np.float64)
    if centroid_x.size == 0:
        return np.zeros((0, maps.width), EMBEDDING_DTYPE)
    parts = [_bilinear(level, centroid_x / s - 0.5, centroid_y / s - 0.5) for level, s in zip(maps.levels, maps.strides)]
    return np.concatenate(parts, axis=1).astype(EMBEDDING_DTYPE)


def label_centroids_of(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) centroids in pixel units (centres at +0.5) of the given label ids of a label map."""
    labels = np.asarray(labels)
    flat = np.flatnonzero(labels > 0)
    rows, cols = np.divmod(flat, labels.shape[1])
    which = labels.ravel()[flat].astype(np.intp)
    size = max(int(np.max(ids)) + 1 if len(ids) else 1, int(which.max()) + 1 if which.size else 1)
    count = np.maximum(np.bincount(which, minlength=size), 1)
    ids = np.asarray(ids, np.intp)
    x = np.bincount(which, cols + 0.5, size)[ids] / count[ids]
    y = np.bincount(which, rows + 0.5, size)[ids] / count[ids]
    return x, y
