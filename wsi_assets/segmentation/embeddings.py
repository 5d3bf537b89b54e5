"""A segmenter's labels with the embedding maps of its nuclei, where it gives them (wsi_assets.cells.embeddings)."""

from __future__ import annotations

import numpy as np

from wsi_assets.cells.embeddings import EmbeddingMaps


def segment_with_embeddings(segmenter, tiles: np.ndarray) -> tuple[np.ndarray, list[EmbeddingMaps] | None]:
    """(labels, per-tile embedding maps) from a segmenter that gives them, else (labels, None)."""
    method = getattr(segmenter, "segment_batch_with_embeddings", None)
    if method is None or getattr(segmenter, "embedding", None) is None:
        return segmenter.segment_batch(tiles), None
    return method(tiles)
