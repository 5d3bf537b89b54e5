"""µm/px of real slide files opened with OpenSlide: from the slide, else from its objective power."""

from __future__ import annotations

import openslide
import pytest

from wsi_assets.slides.mpp import read_slide_info
from wsi_assets.slides.reader import resolve_mpp
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide


@pytest.mark.parametrize(
    "objective_power, expected_mpp",
    [
        (40, 0.25),
        (20, 0.5),  # 40x is the reference: a formula can be wrong everywhere else and right there
        (10, 1.0),
    ],
)
def test_pixel_size_is_inferred_from_objective_power_when_the_slide_has_none(tmp_path, objective_power, expected_mpp):
    path = tmp_path / f"{objective_power}x.svs"
    write_synthetic_slide(
        path,
        SyntheticSlideSpec(width=512, height=512, mpp=expected_mpp, objective_power=objective_power, seed=2, write_mpp=False),
    )
    with openslide.OpenSlide(str(path)) as slide:
        assert openslide.PROPERTY_NAME_MPP_X not in slide.properties  # really without µm/px metadata
        assert float(slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER]) == objective_power
        mpp, source = resolve_mpp(slide)
    assert (mpp, source) == (pytest.approx(expected_mpp), "objective power")

    info = read_slide_info(path)
    assert info.mpp == pytest.approx(expected_mpp)
    assert info.mpp_inferred and info.mpp_source == "objective power" and info.objective_power == objective_power
    assert info.area_mm2 == pytest.approx((512 * expected_mpp / 1000) ** 2)


def test_pixel_size_in_the_slide_wins_over_objective_power(tmp_path):
    path = tmp_path / "stated.svs"
    # A slide whose stated µm/px is not what its objective power would suggest: the stated value is used.
    write_synthetic_slide(path, SyntheticSlideSpec(width=512, height=512, mpp=0.2631, objective_power=20, seed=2))
    info = read_slide_info(path)
    assert info.mpp == pytest.approx(0.2631)
    assert info.mpp_source == "slide" and not info.mpp_inferred
