"""Nucleus measurements against independent computations on synthetic shapes and colours."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsi_assets.cells.measurements import MEASUREMENT_COLUMNS, NucleusMeasurer, measure_labels
from wsi_assets.cells.stain_vectors import DEFAULT_STAINS, StainVectors, estimate_stain_vectors, optical_density, stain_amounts

UM_PER_PX = 0.5


def _stained(od_h: float, od_e: float, stains: StainVectors = DEFAULT_STAINS) -> np.ndarray:
    """The RGB of a pixel holding `od_h` haematoxylin and `od_e` eosin (Beer-Lambert, QuPath's OD)."""
    matrix = stains.matrix()
    od = od_h * matrix[0] + od_e * matrix[1]
    return np.clip(np.round(255 * 10 ** (-od)), 0, 255).astype(np.uint8)


def _shapes() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[:240, :320]
    labels = np.zeros((240, 320), np.int32)
    labels[(rows - 60) ** 2 + (cols - 60) ** 2 <= 30**2] = 1  # disk, r = 30 px
    labels[((rows - 170) / 10.0) ** 2 + ((cols - 200) / 40.0) ** 2 <= 1] = 2  # ellipse, a = 40, b = 10
    ring = ((rows - 60) ** 2 + (cols - 220) ** 2 <= 35**2) & ((rows - 60) ** 2 + (cols - 220) ** 2 >= 25**2) & (cols < 235)
    labels[ring] = 3  # a C-shaped band: far from convex
    rgb = np.full((240, 320, 3), 255, np.uint8)
    return labels, rgb


def test_shape_measurements_match_geometry():
    labels, rgb = _shapes()
    ids, m, area_um2 = measure_labels(labels, rgb, UM_PER_PX)
    assert ids.tolist() == [1, 2, 3]
    assert set(m) == set(MEASUREMENT_COLUMNS)
    disk, ellipse, band = 0, 1, 2
    # A circle's circularity is 1; a pixel outline comes within a few per cent.
    assert 0.93 <= m["nucleus_circularity"][disk] <= 1.0
    assert m["nucleus_circularity"][ellipse] < 0.75
    assert m["nucleus_perimeter_um"][disk] == pytest.approx(2 * math.pi * 30 * UM_PER_PX, rel=0.05)
    assert area_um2[disk] == pytest.approx(math.pi * 30**2 * UM_PER_PX**2, rel=0.02)
    # An ellipse's eccentricity is sqrt(1 - (b/a)^2); its calipers are its axes.
    assert m["nucleus_eccentricity"][ellipse] == pytest.approx(math.sqrt(1 - (10 / 40) ** 2), abs=0.01)
    assert m["nucleus_eccentricity"][disk] < 0.05
    assert m["nucleus_max_caliper_um"][ellipse] == pytest.approx(80 * UM_PER_PX, abs=1.0)
    assert m["nucleus_min_caliper_um"][ellipse] == pytest.approx(20 * UM_PER_PX, abs=1.0)
    assert m["nucleus_max_caliper_um"][disk] == pytest.approx(60 * UM_PER_PX, abs=1.0)
    # Solidity: convex shapes fill their hull, a C-shaped band does not.
    assert m["nucleus_solidity"][disk] > 0.97 and m["nucleus_solidity"][ellipse] > 0.95
    assert m["nucleus_solidity"][band] < 0.6


def test_optical_density_of_known_stains_is_recovered():
    labels, rgb = _shapes()
    rgb[labels == 1] = _stained(0.8, 0.0)
    rgb[labels == 2] = _stained(0.3, 0.4)
    # Half the band light, half dark: a known mean, spread, minimum and maximum.
    band = np.argwhere(labels == 3)
    light, dark = band[: len(band) // 2], band[len(band) // 2 :]
    rgb[light[:, 0], light[:, 1]] = _stained(0.2, 0.0)
    rgb[dark[:, 0], dark[:, 1]] = _stained(1.0, 0.0)
    _, m, _ = measure_labels(labels, rgb, UM_PER_PX)
    # uint8 rounding moves OD by at most ~0.01 at these levels.
    assert m["nucleus_hematoxylin_od_mean"][0] == pytest.approx(0.8, abs=0.02)
    assert m["nucleus_eosin_od_mean"][0] == pytest.approx(0.0, abs=0.02)
    assert m["nucleus_hematoxylin_od_mean"][1] == pytest.approx(0.3, abs=0.02)
    assert m["nucleus_eosin_od_mean"][1] == pytest.approx(0.4, abs=0.02)
    expected_mean = (0.2 * len(light) + 1.0 * len(dark)) / len(band)
    expected_std = math.sqrt((len(light) * (0.2 - expected_mean) ** 2 + len(dark) * (1.0 - expected_mean) ** 2) / len(band))
    assert m["nucleus_hematoxylin_od_mean"][2] == pytest.approx(expected_mean, abs=0.02)
    assert m["nucleus_hematoxylin_od_std"][2] == pytest.approx(expected_std, abs=0.02)
    assert m["nucleus_hematoxylin_od_min"][2] == pytest.approx(0.2, abs=0.02)
    assert m["nucleus_hematoxylin_od_max"][2] == pytest.approx(1.0, abs=0.02)


def test_optical_density_is_log10_of_255_over_intensity():
    assert optical_density(np.array([[[255, 25, 1]]], np.uint8))[0, 0].tolist() == pytest.approx(
        [0.0, math.log10(255 / 25), math.log10(255)]
    )
    pure = stain_amounts(_stained(0.5, 0.0)[None, None], DEFAULT_STAINS)[0, 0]
    assert pure[0] == pytest.approx(0.5, abs=0.01) and abs(pure[1]) < 0.01


def test_stain_vectors_are_estimated_from_tissue_and_fall_back_on_glass():
    rng = np.random.default_rng(0)
    h, e = rng.uniform(0.1, 1.0, 20_000), rng.uniform(0.05, 0.6, 20_000)
    # Slightly bluer haematoxylin and pinker eosin than the default: the estimate should find them.
    stains = StainVectors((0.60, 0.74, 0.30), (0.18, 0.85, 0.50), "truth")
    matrix = stains.matrix()
    od = h[:, None] * matrix[0] + e[:, None] * matrix[1]
    rgb = np.clip(np.round(255 * 10 ** (-od)), 0, 255).astype(np.uint8).reshape(100, 200, 3)
    estimated = estimate_stain_vectors(rgb)
    assert estimated.source == "estimated"
    assert np.dot(estimated.matrix()[0], matrix[0]) > 0.995
    assert np.dot(estimated.matrix()[1], matrix[1]) > 0.995
    # Glass only (no tissue pixels): the documented default, never a made-up vector.
    assert estimate_stain_vectors(np.full((64, 64, 3), 250, np.uint8)) == DEFAULT_STAINS


def test_no_nuclei_and_mismatched_colour_sizes():
    measurer = NucleusMeasurer(UM_PER_PX)
    empty = measurer(np.zeros((8, 8), np.int32), np.zeros((8, 8, 3), np.uint8), np.zeros(0, np.int64), [])
    assert all(len(values) == 0 for values in empty.values())
    labels, rgb = _shapes()
    rgb[labels == 1] = _stained(0.8, 0.0)
    # A colour tile of another size is resized onto the label map, not misread.
    big = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)
    _, m, _ = measure_labels(labels, big, UM_PER_PX)
    assert m["nucleus_hematoxylin_od_mean"][0] == pytest.approx(0.8, abs=0.03)


def test_measuring_some_labels_of_a_tile_matches_measuring_each_alone():
    """A tile's owned nuclei are a subset of its labels: each one's figures are its own, not a neighbour's."""
    from wsi_assets.cells.table import nuclei_from_labels

    labels, rgb = _shapes()
    rgb[labels == 1] = _stained(0.2, 0.1)
    rgb[labels == 2] = _stained(0.9, 0.3)
    rgb[labels == 3] = _stained(0.5, 0.0)
    measurer = NucleusMeasurer(UM_PER_PX)
    every = nuclei_from_labels(labels, measure=lambda ids, outlines: measurer(labels, rgb, ids, outlines))
    some = nuclei_from_labels(
        labels, keep=lambda ids, x, y: ids != 2, measure=lambda ids, outlines: measurer(labels, rgb, ids, outlines)
    )
    assert len(some) == 2
    for name in MEASUREMENT_COLUMNS:
        assert np.allclose(some.columns[name], every.columns[name][[0, 2]], equal_nan=True), name
    assert some.columns["nucleus_hematoxylin_od_max"][1] == pytest.approx(0.5, abs=0.02)
