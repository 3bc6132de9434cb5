"""Seed a process's random streams, keeping TensorFlow's compiled functions when that is exact.

``tf.random.set_seed`` clears TensorFlow's eager kernel cache on every call, so that a cached
stateful random kernel cannot continue an old stream. The clear also drops what every compiled
function built on its first call (Grappler's optimised graph, XLA's executable), which the next
call rebuilds: 1.4 s for the density grid's ``log_prob`` of a planar K=32 flow, once per seed
of a variant trained in one process.

A stateful random op draws with the pair ``(global seed, op seed)``; the op seed is explicit
or the next number of a stream the global seed restarts. So a cached kernel can meet its pair
again only under a global seed that was in force before since the last clear. :func:`set_seeds`
therefore clears the cache only when ``seed`` is one of those (or when it cannot tell); for a
new seed it sets TensorFlow's global seed and restarts the op-seed stream exactly as
``tf.random.set_seed`` does, without the clear. Every random number is the one a fresh process
draws (``tests/test_seeding.py``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np

__all__ = ["set_seeds", "throwaway_seed"]

THROWAWAY_SEED = 0x7468726F  # the global seed of values that are overwritten right away

_SEEDED: set = set()  # global seeds in force since the last clear: their kernels may be cached


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy, tf-keras and TensorFlow with ``seed``, as
    ``tf_keras.utils.set_random_seed`` does; TensorFlow's kernel cache is cleared only when a
    kernel seeded under ``seed`` may be in it (see the module docstring)."""
    import tensorflow as tf
    import tf_keras

    seed = int(seed)
    if not tf.executing_eagerly():  # a graph's seed: no cache involved
        tf_keras.utils.set_random_seed(seed)
    elif _may_be_cached(seed):
        tf_keras.utils.set_random_seed(seed)  # clears the cache
        _SEEDED.clear()
    else:
        _set_without_clear(seed)
    _SEEDED.add(seed)


def _may_be_cached(seed: int) -> bool:
    """Whether ``seed`` was in force since the last clear (the seed in force now included)."""
    _record_in_force()
    return seed in _SEEDED


def _record_in_force() -> None:
    """Count the global seed in force now as used, whoever set it (``None``: TensorFlow's
    default, the one an explicit op seed pairs with)."""
    from tensorflow.python.eager import context
    from tensorflow.python.framework import random_seed

    in_force = context.global_seed()
    _SEEDED.add(random_seed.DEFAULT_GRAPH_SEED if in_force is None else in_force)


def _set_without_clear(seed: int) -> None:
    """``tf_keras.utils.set_random_seed(seed)`` without the kernel cache's clear (TensorFlow's
    ``context._set_global_seed``, bar ``TFE_ContextClearCaches``)."""
    from tensorflow.python.eager import context
    from tf_keras.src import backend

    random.seed(seed)
    np.random.seed(seed)
    ctx = context.context()
    ctx._seed = seed  # the global seed, and the stream of op seeds it restarts
    ctx._rng = random.Random(seed)
    backend._SEED_GENERATOR.generator = random.Random(seed)


@contextlib.contextmanager
def throwaway_seed() -> Iterator[None]:
    """A global seed for random values that are overwritten right away (a model's initial
    weights before its checkpoint is restored; with op determinism on, drawing them needs a
    seed), without clearing the kernel cache. The seed in force before, and its op-seed
    stream where it was, are back afterwards: the caller's later draws are those it would have
    made without the block."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    if not tf.executing_eagerly():
        raise RuntimeError("throwaway_seed() seeds eager execution, not a graph being built")
    _record_in_force()
    ctx = context.context()
    before = ctx._seed, getattr(ctx, "_rng", None)  # no stream before a first seed
    ctx._seed, ctx._rng = THROWAWAY_SEED, random.Random(THROWAWAY_SEED)
    _SEEDED.add(THROWAWAY_SEED)
    try:
        yield
    finally:
        ctx._seed, ctx._rng = before
