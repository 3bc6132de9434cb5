"""Maximum likelihood on image data redraws the dequantization noise at every step."""

import numpy as np
import pytest
import tensorflow as tf

from flows_tf import build_flow
from flows_tf.datasets import digits
from flows_tf.objectives import MaximumLikelihood
from flows_tf.train import check_settings

PIXEL_SPACE = digits.pixel_space_info(logit=True, alpha=0.05)


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, digits.LEVELS, size=(n, 64)).astype(np.float64)
    pixels = levels + rng.random(levels.shape)
    return levels, digits.to_model_space(pixels, True, 0.05)


def _objective(train, **settings):
    flow = build_flow("gaussian", (64,))
    s = check_settings({"batch_size": 8, **settings}, MaximumLikelihood.extra_settings)
    return MaximumLikelihood(flow, s, seed=3, train=train, pixel_space=PIXEL_SPACE)


def _step_batch(objective, index, seed):
    """The model-space batch one step trains on (what ``loss`` feeds the flow)."""
    seen = {}
    objective.flow.log_prob = lambda x: seen.setdefault("x", x) * 0.0
    objective.loss(tf.constant(index), tf.constant(seed))
    return seen["x"].numpy().astype(np.float64)


def test_each_step_draws_new_noise_inside_the_training_images_cells():
    levels, train = _images()
    objective = _objective(train)
    index, seeds = objective.block(0, 2)
    first = _step_batch(objective, index[0], seeds[0])
    again = _step_batch(objective, index[0], seeds[0])
    other = _step_batch(objective, index[0], seeds[0] + [0, 1])
    np.testing.assert_array_equal(first, again)  # a pure function of (seed, step)
    assert not np.allclose(first, other)  # another step, other noise
    for batch in (first, other):
        cells = np.floor(digits.to_pixel_space(batch, PIXEL_SPACE))
        np.testing.assert_array_equal(cells, levels[index[0]])  # same images, same levels
    prepared = train[index[0]]
    assert not np.allclose(first, prepared, atol=1e-3)  # not the prepared split's fixed draw


def test_fixed_dequantization_trains_on_the_prepared_split():
    _, train = _images()
    objective = _objective(train, dequantize="fixed")
    (index,) = objective.block(0, 2)
    assert len(objective.signature) == 1


def test_bad_setting_and_data_outside_the_pixel_space_are_refused():
    _, train = _images()
    with pytest.raises(ValueError, match="'dequantize' must be fresh or fixed"):
        _objective(train, dequantize="sometimes")
    with pytest.raises(ValueError, match="not in the pixel space"):
        _objective(train + 50.0)
