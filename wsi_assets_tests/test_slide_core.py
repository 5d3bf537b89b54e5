"""Plain functions under the assets: tiling, tissue, atomic writes, keys."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_assets.core.atomic import atomic_output
from wsi_assets.core.keys import InvalidSlideKey, SlideKey
from wsi_assets.slides.tiling import make_tile_grid
from wsi_assets.slides.tissue import detect_tissue


def test_tile_cores_partition_the_slide():
    grid = make_tile_grid(5000, 3000, slide_mpp=0.2495, model_mpp=0.5, core=512, margin=64)
    tiles = [grid.tile(r, c) for r in range(grid.rows) for c in range(grid.cols)]
    points = np.random.default_rng(0).uniform([0, 0], [5000, 3000], size=(20_000, 2))
    owners = sum(tile.owns(points[:, 0], points[:, 1]).astype(int) for tile in tiles)
    assert (owners == 1).all()
    for tile in tiles:  # the read box holds the core plus the margin
        assert tile.read_x <= tile.core_x0 - 64 * grid.scale + 1 and tile.read_x + tile.read_w >= tile.core_x1


def test_tissue_mask_of_blank_glass_is_empty():
    glass = np.random.default_rng(0).normal(242, 2, (300, 400, 3)).clip(0, 255).astype(np.uint8)
    tissue = detect_tissue(glass, downsample=16, mpp=0.25)
    assert tissue.area_mm2 == 0 and not tissue.covers(0, 0, 6400, 4800)


def test_atomic_output_keeps_previous_file_on_failure(tmp_path):
    target = tmp_path / "cells.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


def test_slide_keys_round_trip_and_reject_bad_names():
    assert SlideKey.parse("alice/main/slide-01.a").stem == "slide-01.a"
    for bad in ("alice/main", "alice/main/a/b", "alice/ma in/x", "alice/main/.hidden"):
        with pytest.raises(InvalidSlideKey):
            SlideKey.parse(bad)
