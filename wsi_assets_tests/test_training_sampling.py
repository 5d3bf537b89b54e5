"""How training crops are drawn across datasets: by area, or with a fixed share for named sets."""

import numpy as np
import pytest

from wsi_assets.training.data import CropSampler, parse_dataset_shares, sampling_weights


def test_by_area_unless_a_share_is_given():
    datasets = ["a", "a", "b", "c"]
    areas = [100.0, 300.0, 400.0, 200.0]
    np.testing.assert_allclose(sampling_weights(datasets, areas, {}), [0.1, 0.3, 0.4, 0.2])
    weights = sampling_weights(datasets, areas, {"a": 0.25})
    # "a" gets a quarter, split 1:3 by area; b and c share the rest 2:1 by area
    np.testing.assert_allclose(weights, [0.0625, 0.1875, 0.5, 0.25])


def test_the_sampler_draws_crops_in_the_given_shares():
    small = (np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.int32))
    big = (np.full((256, 256, 3), 255, np.uint8), np.zeros((256, 256), np.int32))
    weights = sampling_weights(["small", "big"], [64 * 64, 256 * 256], {"small": 0.5})
    sampler = CropSampler([small, big], crop=32, seed=0, weights=weights)
    picks = sampler.rng.choice(2, size=4000, p=sampler.weights)
    assert abs((picks == 0).mean() - 0.5) < 0.03  # by area alone it would be 1/17


@pytest.mark.parametrize(
    "texts, message",
    [
        (["consep_train"], "DATASET=FRACTION"),
        (["consep_train=1.5"], "between 0 and 1"),
        (["consep_train=abc"], "between 0 and 1"),
        (["a=0.6", "b=0.5"], "add up to 1.10"),
    ],
)
def test_bad_shares_are_refused_in_one_line(texts, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_dataset_shares(texts)
    assert "\n" not in str(error.value)


def test_a_share_for_a_dataset_not_in_the_training_data_is_refused():
    with pytest.raises(ValueError, match="consep is not among the training datasets"):
        sampling_weights(["a", "b"], [1.0, 1.0], {"consep": 0.3})
