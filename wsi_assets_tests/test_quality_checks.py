"""The quality checks fail on bad segmentations, pass on good ones, and say so in Dagster.

Each check is shown a small cell table built by hand (written with the product's own
CellStoreWriter) against a known tissue mask, so the right answer is known exactly: every
check must be seen returning passed=False, not only passed=True on the pipeline slide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from wsi_assets.cells.store import CellStoreWriter
from wsi_assets.cells.table import NucleusTable
from wsi_assets.quality.checks import border_duplicates, nuclei_density, nuclei_in_tissue
from wsi_assets.slides.tissue import TissueMask

MPP = 0.5  # level-0 µm/px
DOWNSAMPLE = 16.0  # level-0 px per mask px: one mask px is 8 µm
MASK_SHAPE = (100, 100)  # 1600 x 1600 level-0 px
TISSUE_COLS = 50  # tissue is the left half of the mask: level-0 x < 800
TISSUE_MM2 = MASK_SHAPE[0] * TISSUE_COLS * (DOWNSAMPLE * MPP / 1000.0) ** 2  # 0.32 mm²
RADIUS_PX = 8.0  # 4 µm nuclei
TILE_PX = 400  # the tile a nucleus was written by: (y // 400, x // 400)


def _tissue() -> TissueMask:
    mask = np.zeros(MASK_SHAPE, bool)
    mask[:, :TISSUE_COLS] = True
    return TissueMask(mask=mask, downsample=DOWNSAMPLE, mpp=MPP)


def _circles(centres: np.ndarray, radius: float = RADIUS_PX) -> NucleusTable:
    """Round nuclei (16-gon outlines) at level-0 `centres` (N, 2) x,y."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    vertices = (centres[:, None, :] + ring[None]).reshape(-1, 2).astype(np.float32)
    return NucleusTable(
        centres[:, 0].copy(),
        centres[:, 1].copy(),
        np.full(len(centres), math.pi * radius**2),
        np.arange(0, 16 * len(centres) + 1, 16, dtype=np.int64),
        vertices,
    )


def _grid(x0: float, x1: float, y0: float, y1: float, step: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _write_cells(path: Path, pieces: list[tuple[np.ndarray, tuple[int, int] | None]]) -> Path:
    """cells.parquet from (centres, tile) pieces; tile None means each nucleus's own tile by position."""
    with CellStoreWriter(path) as writer:
        for centres, tile in pieces:
            if tile is not None:
                writer.append(_circles(centres), *tile)
                continue
            tiles = (centres // TILE_PX).astype(int)  # columns: tile col (x), tile row (y)
            for col, row in np.unique(tiles, axis=0):
                own = (tiles[:, 0] == col) & (tiles[:, 1] == row)
                writer.append(_circles(centres[own]), int(row), int(col))
    return path


# Nuclei every 20 µm inside the tissue half, clear of its edge: 2,500 per mm², all in tissue.
GOOD = _grid(20, 780, 20, 1580, 40)
# The same lattice shifted onto the glass half (mask columns 51-99, beyond the one-pixel slack).
ON_GLASS = GOOD + np.array([820.0, 0.0])


@pytest.fixture()
def good_cells(tmp_path) -> Path:
    return _write_cells(tmp_path / "cells.parquet", [(GOOD, None)])


def test_good_segmentation_passes_every_check(good_cells):
    assert len(GOOD) == 19 * 39
    in_tissue = nuclei_in_tissue(good_cells, _tissue())
    assert in_tissue.passed, in_tissue.description
    assert in_tissue.metadata["nuclei"] == len(GOOD) and in_tissue.metadata["fraction_in_tissue"] == 1.0
    density = nuclei_density(good_cells, _tissue())
    assert density.passed, density.description
    assert density.metadata["nuclei_per_mm2"] == pytest.approx(len(GOOD) / TISSUE_MM2, abs=0.1)
    duplicates = border_duplicates(good_cells, MPP)
    assert duplicates.passed, duplicates.description
    assert duplicates.metadata["duplicate_pairs"] == 0


def test_nuclei_on_glass_fail_the_in_tissue_check(tmp_path):
    cells = _write_cells(tmp_path / "cells.parquet", [(ON_GLASS, None)])
    outcome = nuclei_in_tissue(cells, _tissue())
    assert not outcome.passed
    assert outcome.metadata["fraction_in_tissue"] == 0.0
    # Only the in-tissue check is about this defect: the density is still plausible.
    assert nuclei_density(cells, _tissue()).passed


def test_a_fifth_of_nuclei_on_glass_fails_the_in_tissue_check(tmp_path):
    inside, outside = GOOD[: 4 * len(GOOD) // 5], ON_GLASS[4 * len(GOOD) // 5 :]
    cells = _write_cells(tmp_path / "cells.parquet", [(inside, None), (outside, None)])
    outcome = nuclei_in_tissue(cells, _tissue())
    assert not outcome.passed, outcome.description
    assert outcome.metadata["fraction_in_tissue"] == pytest.approx(len(inside) / (len(inside) + len(outside)), abs=1e-4)


@pytest.mark.parametrize(
    "x, in_tissue",
    [
        (TISSUE_COLS * DOWNSAMPLE + 8, True),  # mask column 50: one mask pixel past the edge
        (TISSUE_COLS * DOWNSAMPLE + DOWNSAMPLE + 8, False),  # mask column 51: two mask pixels past it
    ],
)
def test_the_coarse_mask_edge_has_one_mask_pixel_of_slack(tmp_path, x, in_tissue):
    # A mask pixel is 8 µm: nuclei on the tissue's rim often fall just outside its edge.
    centres = np.stack([np.full(39, x), np.arange(20, 1580, 40)], axis=1)
    outcome = nuclei_in_tissue(_write_cells(tmp_path / "cells.parquet", [(centres, None)]), _tissue())
    assert outcome.metadata["fraction_in_tissue"] == (1.0 if in_tissue else 0.0)
    assert outcome.passed == in_tissue, outcome.description


def test_no_nuclei_on_tissue_fails_the_in_tissue_check(tmp_path):
    cells = _write_cells(tmp_path / "cells.parquet", [])
    outcome = nuclei_in_tissue(cells, _tissue())
    assert not outcome.passed and outcome.metadata["nuclei"] == 0


@pytest.mark.parametrize(
    "step_px, expected_per_mm2",
    [
        (10, 40_000),  # a nucleus every 5 µm: over-segmented, far above 25,000 per mm²
        (400, 25),  # a nucleus every 200 µm: almost nothing found, below 50 per mm²
    ],
)
def test_implausible_density_fails_the_density_check(tmp_path, step_px, expected_per_mm2):
    centres = _grid(step_px / 2, 800, step_px / 2, 1600, step_px)
    cells = _write_cells(tmp_path / "cells.parquet", [(centres, (0, 0))])
    density = len(centres) / TISSUE_MM2
    assert density == pytest.approx(expected_per_mm2)
    outcome = nuclei_density(cells, _tissue())
    assert not outcome.passed, outcome.description
    assert outcome.metadata["nuclei_per_mm2"] == pytest.approx(density, abs=0.1)
    assert nuclei_in_tissue(cells, _tissue()).passed  # they are where the tissue is


def test_nucleus_written_by_two_tiles_fails_the_border_check(tmp_path):
    # Ten nuclei on the x = 400 tile border, reported by tile (0, 0) and again, 1.5 px away, by tile (0, 1).
    border = np.stack([np.full(10, 399.0), np.arange(10) * 40 + 20.0], axis=1)
    cells = _write_cells(
        tmp_path / "cells.parquet",
        [(GOOD[np.abs(GOOD[:, 0] - 400) > 30], None), (border, (0, 0)), (border + [1.5, 0.0], (0, 1))],
    )
    first_id = int((np.abs(GOOD[:, 0] - 400) > 30).sum()) + 1
    expected_pairs = [[first_id + i, first_id + 10 + i] for i in range(10)]
    outcome = border_duplicates(cells, MPP)
    assert not outcome.passed, outcome.description
    assert outcome.metadata["duplicate_pairs"] == 10
    assert sorted(sorted(p) for p in outcome.metadata["example_cell_id_pairs"]) == expected_pairs


def test_close_nuclei_of_one_tile_or_apart_are_not_border_duplicates(tmp_path):
    # Two outlines from the same tile are not a tile-border defect; and two nuclei of different
    # tiles 6 µm apart (close enough to be compared) whose 4 µm outlines hold neither centroid are two nuclei.
    same_tile = np.array([[100.0, 100.0]])
    apart = np.array([[390.0, 300.0]])
    cells = _write_cells(
        tmp_path / "cells.parquet",
        [(same_tile, (0, 0)), (same_tile + [1.0, 0.0], (0, 0)), (apart, (0, 0)), (apart + [12.0, 0.0], (0, 1))],
    )
    outcome = border_duplicates(cells, MPP)
    assert outcome.passed, outcome.description


# ---------------------------------------------------------------- through Dagster

CHECK_OPS = [
    "cell_segmentation_nuclei_found_in_tissue",
    "cell_segmentation_nuclei_density_plausible",
    "cell_segmentation_no_duplicate_nuclei_at_tile_borders",
]


def _stored_slide(root: Path, key: str, pieces) -> None:
    """A slide's outputs folder as the upstream assets leave it, with the given cell table."""
    from wsi_assets.core.keys import SlideKey
    from wsi_assets.core.slide_outputs import SlideOutputs
    from wsi_assets.slides.reader import SlideInfo
    from wsi_assets.slides.stored import save_slide_info, save_tissue_mask

    outputs = SlideOutputs.for_key(root, SlideKey.parse(key))
    outputs.cells_parquet.parent.mkdir(parents=True, exist_ok=True)
    info = SlideInfo(
        path=str(root / "hand-made.svs"),
        vendor="aperio",
        width=1600,
        height=1600,
        level_count=1,
        level_dimensions=[(1600, 1600)],
        level_downsamples=[1.0],
        mpp=MPP,
        mpp_source="slide",
        objective_power=20.0,
        file_size_bytes=1,
    )
    save_slide_info(outputs, info)
    save_tissue_mask(outputs, _tissue())
    _write_cells(outputs.cells_parquet, pieces)


def _run_checks(instance, key: str):
    from wsi_assets.definitions import defs

    instance.add_dynamic_partitions("slides", [key])
    result = defs.resolve_job_def("process_slide").execute_in_process(
        instance=instance, partition_key=key, op_selection=CHECK_OPS, raise_on_error=False
    )
    assert result.success, "the checks themselves must run; a failed check is a result, not an error"
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_failed_checks_show_as_failed_in_dagster(user_files_root, dagster_instance):
    border = np.stack([np.full(10, 399.0), np.arange(10) * 40 + 20.0], axis=1)
    bad = "quinn/main/bad-cells"
    # Everything wrong at once: nuclei on glass, far too dense, and doubled at a tile border.
    _stored_slide(
        user_files_root,
        bad,
        [(_grid(825, 1600, 5, 1600, 10), (0, 2)), (border, (0, 0)), (border + [1.5, 0.0], (0, 1))],
    )
    checks = _run_checks(dagster_instance, bad)
    assert {name: e.passed for name, e in checks.items()} == {
        "nuclei_found_in_tissue": False,
        "nuclei_density_plausible": False,
        "no_duplicate_nuclei_at_tile_borders": False,
    }
    assert checks["no_duplicate_nuclei_at_tile_borders"].metadata["duplicate_pairs"].value == 10
    assert checks["nuclei_found_in_tissue"].metadata["fraction_in_tissue"].value < 0.01
    # An implausible density is a warning; nuclei off the tissue or counted twice are errors.
    assert {name: e.severity.value for name, e in checks.items()} == {
        "nuclei_found_in_tissue": "ERROR",
        "nuclei_density_plausible": "WARN",
        "no_duplicate_nuclei_at_tile_borders": "ERROR",
    }

    good = "quinn/main/good-cells"
    _stored_slide(user_files_root, good, [(GOOD, None)])
    assert {name: e.passed for name, e in _run_checks(dagster_instance, good).items()} == {
        "nuclei_found_in_tissue": True,
        "nuclei_density_plausible": True,
        "no_duplicate_nuclei_at_tile_borders": True,
    }
