"""Lymphocytes per mm² of tissue, in epithelium and in stroma, and their heatmap over the thumbnail."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_assets.cells.lymphocyte_density import lymphocyte_density
from wsi_assets.quality.lymphocyte_heatmap import heatmap_rgb
from wsi_assets.slides.tissue import TissueMask

MPP = 0.5  # level-0 µm/px
# 2 mm x 1 mm of tissue: a mask at 16x downsample (8 µm per mask pixel).
TISSUE = TissueMask(mask=np.ones((125, 250), bool), downsample=16.0, mpp=MPP)


def _nuclei(rng, n: int, x_um: tuple[float, float], cls: str):
    x = rng.uniform(*x_um, n) / MPP
    y = rng.uniform(0, 1000, n) / MPP
    return x, y, np.full(n, cls, object)


def _slide(rng):
    """Epithelium on the left millimetre with few lymphocytes, stroma on the right with many."""
    parts = [
        _nuclei(rng, 2000, (0, 1000), "epithelial"),
        _nuclei(rng, 100, (0, 1000), "inflammatory"),
        _nuclei(rng, 800, (1000, 2000), "spindle"),
        _nuclei(rng, 600, (1000, 2000), "inflammatory"),
    ]
    return (np.concatenate([p[i] for p in parts]) for i in range(3))


def test_lymphocytes_are_counted_per_compartment_of_tissue():
    x, y, classes = _slide(np.random.default_rng(0))
    density = lymphocyte_density(x, y, classes, TISSUE)
    figures = density.figures()
    assert figures["lymphocytes_per_mm2"] == pytest.approx(700 / 2.0, rel=1e-3)
    # The 50 µm squares follow the nuclei: one mm² each side, within a square's width at the border.
    assert figures["epithelium_mm2"] == pytest.approx(1.0, abs=0.06)
    assert figures["stroma_mm2"] == pytest.approx(1.0, abs=0.06)
    assert figures["lymphocytes_per_mm2_epithelium"] == pytest.approx(100, rel=0.15)
    assert figures["lymphocytes_per_mm2_stroma"] == pytest.approx(600, rel=0.15)


def test_classes_that_cannot_tell_epithelium_leave_the_compartments_out():
    x, y, classes = _slide(np.random.default_rng(1))
    rule_classes = np.where(classes == "inflammatory", "inflammatory", "other").astype(object)
    figures = lymphocyte_density(x, y, rule_classes, TISSUE).figures()
    assert figures["lymphocytes_per_mm2_epithelium"] is None and figures["lymphocytes_per_mm2_stroma"] is None
    assert figures["lymphocytes_per_mm2"] == pytest.approx(350, rel=1e-3)


def test_no_tissue_gives_zero_not_a_division_error():
    empty = TissueMask(mask=np.zeros((125, 250), bool), downsample=16.0, mpp=MPP)
    x, y, classes = _slide(np.random.default_rng(2))
    figures = lymphocyte_density(x, y, classes, empty).figures()
    assert figures["lymphocytes_per_mm2"] == 0.0 and figures["lymphocytes_per_mm2_stroma"] is None


def test_a_bad_grid_is_refused_in_one_line():
    with pytest.raises(ValueError, match="positive number of µm"):
        lymphocyte_density(np.zeros(1), np.zeros(1), np.array(["inflammatory"], object), TISSUE, grid_um=0)


def test_the_heatmap_is_hot_where_lymphocytes_are_dense_and_leaves_glass_alone():
    x, y, classes = _slide(np.random.default_rng(3))
    half_tissue = TISSUE.mask.copy()
    half_tissue[:, :10] = False  # a strip of glass on the left edge
    density = lymphocyte_density(x, y, classes, TissueMask(half_tissue, TISSUE.downsample, MPP))
    thumbnail = np.full((100, 200, 3), 200, np.uint8)  # 10 µm per thumbnail pixel: 4000 x 2000 level-0 px
    out = heatmap_rgb(thumbnail, density, 4000, 2000)
    assert out.shape[1] == 200 and out.shape[0] > 100  # the scale bar below
    left, right = out[40:60, 40:60].astype(int), out[40:60, 140:160].astype(int)
    # INFERNO runs dark purple to yellow: the dense right half is brighter than the sparse left.
    assert right.sum(axis=2).mean() > left.sum(axis=2).mean() + 60
    assert (out[40:60, 0:3] == 200).all()  # glass keeps the thumbnail's own colour


def test_the_tissue_mask_draws_the_heatmaps_outline():
    x, y, classes = _slide(np.random.default_rng(4))
    density = lymphocyte_density(x, y, classes, TISSUE)
    mask = np.ones((125, 250), bool)
    mask[:, 200:] = False  # glass on the right fifth, inside the density's tissue squares
    out = heatmap_rgb(np.full((100, 200, 3), 200, np.uint8), density, 4000, 2000, tissue_mask=mask)
    assert (out[10:90, 165:200] == 200).all() and not (out[10:90, 140:155] == 200).all()
