"""Seeding without clearing TensorFlow's kernel cache draws what a clearing seed draws."""

import random

import numpy as np
import tensorflow as tf

from flows_tf import seeding


def _draws() -> list[np.ndarray]:
    """Stateful draws of every kind a build makes: op seeds from the global stream, an explicit
    op seed, NumPy and Python."""
    return [
        tf.random.normal([3]).numpy(),
        tf.random.uniform([2], seed=7).numpy(),
        np.random.rand(2),
        np.array([random.random()]),
    ]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_new_seed_draws_what_a_fresh_seed_draws_and_an_old_one_draws_its_first_numbers():
    seeding.set_seeds(10)
    first_10 = _draws()
    seeding.set_seeds(11)  # new since the last clear: no clear
    first_11 = _draws()
    tf.random.set_seed(11)  # the reference: TensorFlow's own, clearing seed
    np.random.seed(11)
    random.seed(11)
    assert _same(_draws(), first_11)
    seeding.set_seeds(10)  # in force before since the last clear (set by tf.random.set_seed)
    assert _same(_draws(), first_10)
    seeding.set_seeds(11)  # the seed in force before counts, whoever set it
    assert _same(_draws(), first_11)
    assert not _same(first_10, first_11)


def test_a_new_seed_keeps_compiled_functions_and_an_old_one_restarts_them():
    @tf.function
    def stream() -> tf.Tensor:  # a stateful kernel inside a compiled function: it lives in
        return tf.random.uniform([1], seed=3)  # the cache, so only a clear restarts its stream

    seeding.set_seeds(20)
    first = stream().numpy()
    seeding.set_seeds(21)
    assert not np.array_equal(stream().numpy(), first)  # kept: the stream went on
    seeding.set_seeds(20)
    assert np.array_equal(stream().numpy(), first)  # cleared: the stream restarted


def test_a_throwaway_seed_leaves_the_callers_draws_and_compiled_functions_alone():
    @tf.function
    def stream() -> tf.Tensor:
        return tf.random.uniform([1], seed=3)

    seeding.set_seeds(40)
    without = _draws()
    seeding.set_seeds(40)  # in force before: cleared, so every stream restarts
    first = stream().numpy()
    with seeding.throwaway_seed():
        tf.random.normal([5])  # e.g. initial values a restore overwrites
        tf.random.uniform([2], seed=7)
    assert _same(_draws(), without)
    assert not np.array_equal(stream().numpy(), first)  # not cleared: its stream went on
