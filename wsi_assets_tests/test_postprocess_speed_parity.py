"""The cheaper post-processing (relabel, outlines, owned nuclei) gives bit-identical outputs.

The `reference_*` functions (wsi_assets/testing/postprocess_reference.py) are the implementations
before issue 12, kept verbatim as the yardstick (benchmarks/postprocess_timing.py times them too);
real label maps come from the CMU slide through the classical segmenter and the shipped learned model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from wsi_assets.cells.table import NucleusTable, nuclei_from_labels
from wsi_assets.segmentation.classical import ClassicalSegmenter
from wsi_assets.segmentation.colour_gate import without_non_nuclear
from wsi_assets.segmentation.registry import get_segmenter
from wsi_assets.segmentation.slide import _read_tile, owned_nuclei
from wsi_assets.segmentation.torchscript import _relabel
from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import open_slide
from wsi_assets.slides.tiling import make_tile_grid
from wsi_assets.testing.postprocess_reference import (
    assert_same_table,
    reference_nuclei_from_labels,
    reference_owned_nuclei,
    reference_relabel,
)

CMU_SLIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"


# ------------------------------------------------------------------ data
def odd_label_maps() -> dict[str, np.ndarray]:
    """Hand-made cases the real maps may not hold."""
    maps = {"empty": np.zeros((40, 50), np.int32)}
    border = np.zeros((30, 30), np.int32)
    border[0:4, 5:9] = 1  # touches the top edge
    border[10:14, 26:30] = 2  # touches the right edge
    border[29, 0] = 3  # a 1-px nucleus in the corner
    border[15, 15] = 4  # a 1-px nucleus inside
    maps["border_and_single_pixels"] = border
    parts = np.zeros((40, 40), np.int32)
    parts[2:6, 2:6] = 7  # two disconnected parts of one label, the larger second
    parts[20:30, 20:31] = 7
    parts[10:13, 30:33] = 9  # two parts of equal area: the first contour found wins
    parts[33:36, 3:6] = 9
    parts[8:18, 8:18] = 12  # a ring: the outer contour only
    parts[11:15, 11:15] = 0
    maps["disconnected_equal_and_ring"] = parts
    sparse = np.zeros((64, 64), np.int64)
    sparse[5:9, 5:12] = 3  # ids with gaps, negative background, int64
    sparse[30:40, 30:33] = 4000
    sparse[50:60, 2:5] = 17
    sparse[sparse == 0] = -1
    maps["non_consecutive_negative_int64"] = sparse
    rng = np.random.default_rng(1)
    maps["noise"] = rng.integers(0, 6, (70, 90)).astype(np.int32)  # many ragged, many-part labels
    return maps


@pytest.fixture(scope="module")
def cmu_tiles():
    """Real tiles of the CMU slide as segment_slide reads them (model 0.5 µm/px, 256 px cores)."""
    info = read_slide_info(CMU_SLIDE)
    grid = make_tile_grid(info.width, info.height, info.mpp, 0.5, 256, 64)
    tiles = [grid.tile(r, c) for r in range(grid.rows) for c in range(grid.cols)]
    with open_slide(CMU_SLIDE) as slide:
        images = np.stack([_read_tile(slide, t, grid) for t in tiles])
    return grid, tiles, images


@pytest.fixture(scope="module")
def real_label_maps(cmu_tiles):
    grid, tiles, images = cmu_tiles
    classical = ClassicalSegmenter(threads=1).segment_batch(images)
    learned = get_segmenter("learned", device="cpu").segment_batch(images[:4])
    return {"classical": classical, "learned": learned}


# ------------------------------------------------------------------ tests
def test_relabel_is_identical_on_real_and_odd_maps(real_label_maps):
    cases = list(odd_label_maps().values()) + [m for maps in real_label_maps.values() for m in maps]
    rng = np.random.default_rng(3)
    cases += [m.astype(np.int64) * 1000 - 5 for m in real_label_maps["classical"][:3]]  # gaps, negatives
    cases += [rng.integers(-2, 2**31 - 1, (33, 35)).astype(np.int32)]  # ids far above the pixel count
    cases += [np.full((9, 9), 5, np.int32), np.array([[-3]], np.int32)]
    for labels in cases:
        new, old = _relabel(labels), reference_relabel(labels)
        assert new.dtype == old.dtype == np.int32 and np.array_equal(new, old)
    # The old code raised IndexError on an empty map; the new one returns it empty.
    assert _relabel(np.zeros((0, 4), np.int32)).shape == (0, 4)


def test_relabel_inside_the_model_path_matches(real_label_maps, cmu_tiles):
    """segment_batch relabels the model's raw output: the same as relabelling it the old way."""
    segmenter = get_segmenter("learned", device="cpu")
    images = cmu_tiles[2][:2]
    raw = np.concatenate([segmenter._forward(images[i : i + 1]) for i in range(2)])
    assert raw.dtype == np.int32 and raw.max() > 0
    raw = np.stack([without_non_nuclear(r, image) for r, image in zip(raw, images)])  # the colour gate comes first
    assert np.array_equal(segmenter.segment_batch(images), np.stack([reference_relabel(r) for r in raw]))


@pytest.mark.parametrize(
    "origin, scale",
    [
        ((0.0, 0.0), (1.0, 1.0)),
        ((1234, 77), (2.0040080160320643, 1.9959919839679359)),
        ((5.5, 0.25), (np.float64(0.3), np.float32(3.7))),
    ],
)
def test_nuclei_from_labels_is_identical(real_label_maps, origin, scale):
    maps = list(odd_label_maps().values()) + [m for maps in real_label_maps.values() for m in maps]
    nuclei = 0
    for labels in maps:
        new = nuclei_from_labels(labels, *origin, *scale)
        assert_same_table(new, reference_nuclei_from_labels(labels, *origin, *scale))
        nuclei += len(new)
    assert nuclei > 1000  # the real maps are not empty


def test_keep_selects_the_same_rows_as_select_afterwards(real_label_maps):
    labels = max(real_label_maps["learned"], key=lambda m: m.max())  # the tile with most nuclei
    everything = nuclei_from_labels(labels, 10, 20, 1.5, 1.5)
    keep = lambda ids, x, y: (ids % 3 != 0) & (x > 200)  # noqa: E731
    chosen = keep(np.unique(labels[labels > 0]), everything.centroid_x, everything.centroid_y)
    assert 0 < chosen.sum() < len(everything)
    assert_same_table(nuclei_from_labels(labels, 10, 20, 1.5, 1.5, keep=keep), everything.select(chosen))
    assert_same_table(nuclei_from_labels(labels, keep=lambda ids, x, y: ids < 0), NucleusTable.empty())


def test_owned_nuclei_is_identical_on_every_tile_of_a_real_slide(cmu_tiles, real_label_maps):
    grid, tiles, _ = cmu_tiles
    owned = 0
    for name, maps in real_label_maps.items():
        for labels, tile in zip(maps, tiles):
            new = owned_nuclei(labels, tile, grid)
            assert_same_table(new, reference_owned_nuclei(labels, tile, grid))
            owned += len(new)
    for labels in odd_label_maps().values():  # edge-touching and corner nuclei on a tile of any size
        tile = tiles[len(tiles) // 2]
        scaled = cv2.resize(labels.astype(np.int32), (grid.tile_pixels, grid.tile_pixels), interpolation=cv2.INTER_NEAREST)
        assert_same_table(owned_nuclei(scaled, tile, grid), reference_owned_nuclei(scaled, tile, grid))
    assert owned > 1000
