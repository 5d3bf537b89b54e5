"""Per-image stain normalisation: differently stained copies of one image come out alike."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_assets.cells.stain_normalisation import STAIN_NORMALISATION, normalise_stains, normaliser, stain_statistics
from wsi_assets.cells.stain_vectors import StainVectors


def _stained(h: np.ndarray, e: np.ndarray, stains: StainVectors) -> np.ndarray:
    od = h[..., None] * stains.matrix()[0] + e[..., None] * stains.matrix()[1]
    return np.clip(np.rint(255.0 * 10.0**-od), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def amounts():
    """Haematoxylin and eosin amounts of a tissue-like image: round nuclei in eosin-stained stroma, some glass."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:160, :160]
    h = np.full((160, 160), 0.08)
    for _ in range(40):
        cy, cx, r = rng.uniform(0, 160), rng.uniform(0, 160), rng.uniform(3, 7)
        h[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.4, 0.8)
    e = 0.25 + 0.1 * rng.random((160, 160))
    glass = xx > 140
    h[glass], e[glass] = 0.01, 0.01
    return h + 0.02 * rng.random((160, 160)), e


# the same tissue from another lab: a paler haematoxylin of another shade and a stronger eosin
LAB_A = StainVectors((0.651, 0.701, 0.290), (0.216, 0.801, 0.558))
LAB_B = StainVectors((0.55, 0.76, 0.35), (0.28, 0.83, 0.48))


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_a_paler_and_a_darker_staining_of_one_image_are_brought_close_together(amounts):
    h, e = amounts
    a = _stained(h, e, LAB_A)
    b = _stained(0.6 * h, 1.6 * e, LAB_A)
    raw = _difference(a, b)
    normalised = _difference(normalise_stains(a), normalise_stains(b))
    # leaving the images as they are (the identity) fails this: they differ by ~20 grey levels
    assert raw > 12
    assert normalised < 2


def test_another_lab_s_stain_vectors_are_mapped_to_the_target_when_given(amounts):
    h, e = amounts
    a = _stained(h, e, LAB_A)
    b = _stained(0.6 * h, 1.6 * e, LAB_B)
    target = normalise_stains(a)
    with_its_vectors = normalise_stains(b, stain_statistics(b, stains=LAB_B))
    assert _difference(a, b) > 12 and _difference(with_its_vectors, target) < 2
    # the default vectors only half undo another lab's shades: what a slide's own vectors are for
    assert _difference(normalise_stains(b), target) > 5


def test_statistics_are_the_whole_image_s_so_a_nucleus_keeps_its_darkness_relative_to_its_neighbours(amounts):
    h, e = amounts
    image = _stained(h, e, LAB_A)
    whole = normalise_stains(image)
    # the same pixels normalised with the whole image's statistics, cut after: identical to cutting after normalising
    part = normalise_stains(image[:40, :40], stain_statistics(image))
    assert np.array_equal(part, whole[:40, :40])
    assert normalise_stains(image).dtype == np.uint8 and whole.shape == image.shape


def test_an_unknown_recipe_is_refused_and_none_means_raw_pixels():
    assert normaliser(None) is None and normaliser("") is None
    assert normaliser(STAIN_NORMALISATION) is normalise_stains
    with pytest.raises(ValueError, match="not known to this version"):
        normaliser("reinhard-v9")
