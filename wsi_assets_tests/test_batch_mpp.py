"""One µm/px per batch where the files do not state it: estimated from a sample of its images, kept for later additions."""

from dataclasses import replace

import numpy as np
import pytest

from wsi_assets.batches.manifest import (
    BRANCH,
    DEFAULT,
    ESTIMATE,
    ESTIMATE_SAMPLE,
    METADATA,
    NEW,
    UNCHANGED,
    ManifestImage,
    one_estimate_per_batch,
)
from wsi_assets.slides.mpp_estimate import TYPICAL_NUCLEUS_UM, NucleusSizes


def _image(index: int, source: str = ESTIMATE, change: str = NEW, mpp: float = 0.5) -> ManifestImage:
    return ManifestImage(f"field{index:05d}.png", 1000, 1, "sha", 512, 512, mpp, source, source in (ESTIMATE, DEFAULT), change)


def _blobs(diameter_px: float, count: int = 40) -> NucleusSizes:
    return NucleusSizes(np.full(count, diameter_px), np.ones(count))


def test_estimate_comes_from_an_evenly_spread_sample_and_is_shared():
    images = [_image(i) for i in range(300)] + [_image(900, METADATA, mpp=0.25), _image(901, BRANCH, mpp=0.3)]
    asked: list[str] = []

    def measure(image):
        asked.append(image.name)
        return _blobs(15.2)

    chosen = one_estimate_per_batch(images, measure, default_mpp=0.5, workers=1)
    assert len(asked) == ESTIMATE_SAMPLE < 300, "only a sample of the batch is decoded again"
    assert asked[0] == "field00000.png" and asked[-1] == "field00299.png", "the sample spans the batch"
    estimated = [i for i in chosen if i.mpp_source == ESTIMATE]
    assert len(estimated) == 300 and {i.mpp for i in estimated} == {round(TYPICAL_NUCLEUS_UM / 15.2, 4)}
    assert all(i.mpp_inferred for i in estimated)
    stated = {i.name: (i.mpp, i.mpp_source) for i in chosen if not i.mpp_inferred}
    assert stated == {"field00900.png": (0.25, METADATA), "field00901.png": (0.3, BRANCH)}


def test_the_sample_pools_its_nuclei_so_sparse_fields_still_count():
    """Ten fields of 2 blobs each cannot be estimated one by one (30 needed), but pooled they can."""
    images = [_image(i) for i in range(10)]
    chosen = one_estimate_per_batch(images, lambda image: _blobs(15.2, count=3), default_mpp=0.5, workers=1)
    assert {(i.mpp, i.mpp_source) for i in chosen} == {(round(TYPICAL_NUCLEUS_UM / 15.2, 4), ESTIMATE)}


def test_no_nuclei_in_the_sample_falls_back_to_the_default_flagged():
    chosen = one_estimate_per_batch([_image(i) for i in range(5)], lambda image: None, default_mpp=0.31, workers=1)
    assert {(i.mpp, i.mpp_source, i.mpp_inferred) for i in chosen} == {(0.31, DEFAULT, True)}


def test_images_added_later_take_the_batch_value_without_estimating():
    earlier = [_image(i, change=UNCHANGED, mpp=0.42) for i in range(10)]
    added = [_image(100 + i) for i in range(3)]

    def must_not_estimate(image):
        pytest.fail("an addition must not re-estimate the batch's µm/px")

    chosen = one_estimate_per_batch(earlier + added, must_not_estimate, default_mpp=0.5, workers=1)
    assert {i.mpp for i in chosen} == {0.42}
    assert [i.change for i in chosen].count(UNCHANGED) == 10


def test_a_batch_without_unstated_images_is_left_as_it_is():
    images = [_image(i, METADATA, mpp=0.25) for i in range(3)] + [replace(_image(9, change=UNCHANGED), mpp=0.4)]
    assert one_estimate_per_batch(images, lambda image: pytest.fail("nothing to estimate"), 0.5) == images


def test_images_differing_only_by_extension_keep_the_first_and_reject_the_others():
    from wsi_assets.batches.manifest import images_with_distinct_stems

    images = [_image(1), replace(_image(1), name="field00001.tif"), _image(2), replace(_image(2), name="field00002.jpeg")]
    kept, rejected = images_with_distinct_stems(images)
    assert [i.name for i in kept] == ["field00001.png", "field00002.jpeg"]
    assert [name for name, _ in rejected] == ["field00001.tif", "field00002.png"]
    assert all("same name as" in why and "rename one" in why for _, why in rejected)
    assert images_with_distinct_stems(kept) == (kept, [])
