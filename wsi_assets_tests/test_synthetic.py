"""The synthetic slide generator: OpenSlide reads its files as Aperio, and its truth matches its pixels."""

from __future__ import annotations

import cv2
import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from wsi_assets.slides import synthetic
from wsi_assets.slides.synthetic import (
    SyntheticSlideSpec,
    count_synthetic_nuclei,
    iter_synthetic_nuclei,
    pyramid,
    read_synthetic_spec,
    synthetic_nuclei,
    synthetic_nucleus_polygons,
    synthetic_tissue_mask,
    write_synthetic_slide,
)

SPEC = SyntheticSlideSpec(width=2304, height=1800, seed=7)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "slide.svs"
    write_synthetic_slide(path, SPEC)
    return path


@pytest.fixture(scope="module")
def slide(slide_path):
    with openslide.OpenSlide(slide_path) as handle:
        yield handle


@pytest.fixture(scope="module")
def truth():
    return synthetic_nuclei(SPEC, 0, 0, SPEC.width, SPEC.height)


def level_pixels(slide, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Level pixels from (x, y) in that level's own pixels."""
    downsample = round(slide.level_downsamples[level])
    region = slide.read_region((x * downsample, y * downsample), level, (width, height))
    return np.asarray(region.convert("RGB"))


def test_openslide_reads_an_aperio_pyramid(slide):
    assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
    assert slide.dimensions == (SPEC.width, SPEC.height)
    assert slide.level_count == 2
    assert slide.level_dimensions[1] == (SPEC.width // 4, SPEC.height // 4)
    assert slide.level_downsamples[1] == pytest.approx(4.0)
    assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(SPEC.mpp)
    assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(SPEC.mpp)
    assert slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "40"


def test_levels_shrink_by_four_until_the_long_side_fits_1024():
    assert synthetic.level_downsamples(SyntheticSlideSpec(1000, 800)) == [1]
    assert synthetic.level_downsamples(SyntheticSlideSpec(4096, 1000)) == [1, 4]
    assert synthetic.level_downsamples(SyntheticSlideSpec(100_000, 80_000)) == [1, 4, 16, 64, 256]


def test_without_mpp_only_the_objective_power_is_written(tmp_path):
    spec = SyntheticSlideSpec(width=600, height=500, write_mpp=False, objective_power=20, mpp=0.5)
    path = tmp_path / "no_mpp.svs"
    write_synthetic_slide(path, spec)
    with openslide.OpenSlide(path) as handle:
        assert handle.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert openslide.PROPERTY_NAME_MPP_X not in handle.properties
        assert handle.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "20"
    assert read_synthetic_spec(path) == spec


def test_spec_round_trips_and_other_files_have_none(slide_path, tmp_path):
    assert read_synthetic_spec(slide_path) == SPEC
    not_a_slide = tmp_path / "notes.txt"
    not_a_slide.write_text("hello")
    assert read_synthetic_spec(not_a_slide) is None
    plain_tiff = tmp_path / "plain.tif"
    tifffile.imwrite(plain_tiff, np.zeros((8, 8, 3), np.uint8), description="Aperio Image Library|AppMag = 20")
    assert read_synthetic_spec(plain_tiff) is None


def test_counts_agree_and_ids_are_unique(truth):
    chunks = list(iter_synthetic_nuclei(SPEC, chunk_px=700))
    assert len(chunks) == 4 * 3
    assert len(truth) == count_synthetic_nuclei(SPEC) == sum(len(c) for c in chunks) > 500
    assert truth["nucleus_id"].is_unique
    assert truth["nucleus_id"].dtype == np.int64
    assert set(pd.concat(chunks)["nucleus_id"]) == set(truth["nucleus_id"])
    assert list(truth.columns[:3]) == ["nucleus_id", "centroid_x", "centroid_y"]


def test_regions_select_by_centre(truth):
    x0, y0, x1, y1 = 500, 400, 1300, 1100
    inside = truth[truth.centroid_x.between(x0, x1, "left") & truth.centroid_y.between(y0, y1, "left")]
    region = synthetic_nuclei(SPEC, x0, y0, x1, y1)
    pd.testing.assert_frame_equal(region.reset_index(drop=True), inside.reset_index(drop=True))
    assert synthetic_nuclei(SPEC, 0, 0, 0, 0).empty


def test_polygons_match_the_table(truth):
    polygons = synthetic_nucleus_polygons(SPEC, truth.head(50))
    assert len(polygons) == 50
    for polygon, row in zip(polygons, truth.head(50).itertuples()):
        assert polygon.shape[1] == 2 and len(polygon) >= 16
        x, y = polygon[:, 0], polygon[:, 1]
        cross = x * np.roll(y, -1) - np.roll(x, -1) * y
        area = cross.sum() / 2
        assert area == pytest.approx(row.area_pixels, rel=1e-9)
        assert (x + np.roll(x, -1)) @ cross / (6 * area) == pytest.approx(row.centroid_x, abs=1e-6)
        assert (y + np.roll(y, -1)) @ cross / (6 * area) == pytest.approx(row.centroid_y, abs=1e-6)
    radius_um = np.sqrt(truth.area_pixels / np.pi) * SPEC.mpp
    assert radius_um.between(2.5, 6.0).all()


def test_tissue_covers_part_of_the_slide_and_holds_every_nucleus(truth):
    mask = synthetic_tissue_mask(SPEC, 4)
    assert mask.shape == (SPEC.height // 4, SPEC.width // 4)
    assert 0.35 <= mask.mean() <= 0.6
    rows = (truth.centroid_y / 4).astype(int)
    cols = (truth.centroid_x / 4).astype(int)
    assert mask[rows, cols].mean() > 0.98


def test_pixels_show_nuclei_stroma_and_glass(slide, truth):
    level0 = level_pixels(slide, 0, 0, 0, SPEC.width, SPEC.height).astype(int)
    centres = level0[truth.centroid_y.astype(int), truth.centroid_x.astype(int)]
    assert (centres[:, 1] < 140).mean() > 0.99  # hematoxylin absorbs green
    assert np.median(centres, axis=0) == pytest.approx([90, 60, 150], abs=30)

    nucleus_area = np.zeros(level0.shape[:2], np.uint8)
    for polygon in synthetic_nucleus_polygons(SPEC, truth):
        cv2.fillPoly(nucleus_area, [np.rint(polygon - 0.5).astype(np.int32)], 1)
    near_nucleus = cv2.dilate(nucleus_area, np.ones((9, 9), np.uint8)).astype(bool)
    tissue = cv2.resize(synthetic_tissue_mask(SPEC, 1).astype(np.uint8), (SPEC.width, SPEC.height)) > 0
    eroded_tissue = cv2.erode(tissue.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    stroma = level0[eroded_tissue & ~near_nucleus]
    glass = level0[~cv2.dilate(tissue.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~near_nucleus]
    assert len(stroma) > 10_000 and len(glass) > 10_000
    assert np.median(stroma, axis=0) == pytest.approx([235, 170, 200], abs=15)
    assert np.median(glass, axis=0) == pytest.approx([242, 242, 242], abs=5)


def test_level_one_looks_like_level_zero_shrunk(slide):
    level0 = level_pixels(slide, 0, 0, 0, 2048, 1536)
    level1 = level_pixels(slide, 1, 0, 0, 512, 384).astype(np.float32)
    shrunk = cv2.resize(level0, (512, 384), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(shrunk.mean(axis=(0, 1)) - level1.mean(axis=(0, 1))).max() < 3
    assert np.corrcoef(shrunk[..., 1].ravel(), level1[..., 1].ravel())[0, 1] > 0.95
    # each level has its own fine texture: compare what survives a slight blur
    blurred_difference = cv2.GaussianBlur(shrunk, (0, 0), 1) - cv2.GaussianBlur(level1, (0, 0), 1)
    assert np.abs(blurred_difference).mean() < 6


@pytest.mark.parametrize(("downsample", "size"), [(1, 256), (4, 256), (64, 16)])
def test_regions_rendered_in_pieces_equal_one_region(downsample, size):
    spec = SyntheticSlideSpec(width=3000, height=3000, seed=3)
    y = 4 * size // downsample  # a band through the tissue
    whole = synthetic.render_region(spec, downsample, 0, y, 4 * size, 2 * size)
    pieces = [
        [synthetic.render_region(spec, downsample, x, y + dy, size, size) for x in range(0, 4 * size, size)] for dy in (0, size)
    ]
    np.testing.assert_array_equal(whole, np.vstack([np.hstack(row) for row in pieces]))
    assert (whole[..., 1] < 150).any()  # nuclei are in view


def test_same_spec_gives_the_same_file(tmp_path, slide_path):
    again = tmp_path / "again.svs"
    write_synthetic_slide(again, SPEC)
    assert again.read_bytes() == slide_path.read_bytes()
    other = SyntheticSlideSpec(width=SPEC.width, height=SPEC.height, seed=SPEC.seed + 1)
    assert not synthetic_nuclei(other, 0, 0, 1000, 1000).equals(synthetic_nuclei(SPEC, 0, 0, 1000, 1000))


def test_file_appears_only_when_complete(tmp_path, monkeypatch):
    target = tmp_path / "slide.svs"
    seen = []
    render = synthetic.render_region

    def watching_render(*args):
        seen.append((target.exists(), sorted(p.name for p in tmp_path.iterdir())))
        return render(*args)

    monkeypatch.setattr(pyramid, "render_region", watching_render)  # the name the writer calls
    write_synthetic_slide(target, SyntheticSlideSpec(width=600, height=400))
    assert seen and not any(exists for exists, _ in seen)
    assert all(len(names) == 1 and names[0].endswith(".tmp") for _, names in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["slide.svs"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args):
        calls.append(args)
        if len(calls) > 3:
            raise RuntimeError("disk on fire")
        return np.zeros((256, 2048, 3), np.uint8)

    monkeypatch.setattr(pyramid, "render_region", failing_render)  # the name the writer calls
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_synthetic_slide(tmp_path / "slide.svs", SyntheticSlideSpec(width=4096, height=4096))
    assert list(tmp_path.iterdir()) == []
