"""A cached bank of teacher sample pairs ``(z, T(z))`` for paired distillation.

A MAF teacher samples sequentially (D MADE passes per layer), so paired ("instructive")
distillation draws its pairs once: :func:`build_teacher_pairs` runs the teacher's forward map
``x = T(z)``, ``z ~ N(0, I)``, in compiled batches of a fixed size; :func:`draw_pairs` takes a
minibatch from the bank inside a compiled training step (stateless, so a step's pairs are a
pure function of its seed).

Example:
    >>> from flows_tf.flows import build_flow
    >>> maf = build_flow("maf", [2], num_layers=2, hidden_units=[8])
    >>> bank = build_teacher_pairs(maf, 1000, seed=0)
    >>> z, x = draw_pairs(bank, 256, seed=tf.constant([0, 7]))
    >>> x.shape
    TensorShape([256, 2])

References:
    Baranchuk et al. (2021), Distilling the knowledge from normalizing flows, arXiv:2106.12699.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from flows_tf import traces

__all__ = ["BANK_STREAM", "TeacherPairs", "build_teacher_pairs", "draw_pairs", "keep_near_data"]

BANK_STREAM = 0x62616E6B  # "bank": the second word of the bank's stateless seeds


@dataclass(frozen=True)
class TeacherPairs:
    """``n`` teacher pairs: noise ``z`` and the teacher's samples ``x = T(z)``, both ``(n, D)``."""

    z: tf.Tensor
    x: tf.Tensor

    @property
    def size(self) -> int:
        return int(self.z.shape[0])


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"build_teacher_pairs: {name}={value!r} must be a positive integer")
    return int(value)


def _drawer(teacher: tfd.TransformedDistribution, batch_size: int) -> Callable:
    """The compiled ``seed -> (z, T(z))`` of ``batch_size`` rows."""
    base = teacher.distribution

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
    def draw(batch_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = base.sample(batch_size, seed=batch_seed)
        return z, teacher.bijector.forward(z)

    return draw


def build_teacher_pairs(
    teacher: tfd.TransformedDistribution, n: int, *, batch_size: int = 4096, seed: int = 0
) -> TeacherPairs:
    """Draw ``n`` pairs ``(z, T(z))`` in compiled batches of ``batch_size`` (one trace; one for
    every seed's teacher of a variant inside :func:`flows_tf.traces.reuse_traces`, where the
    teacher is its spec's host).

    Batch ``b`` uses the stateless seed ``fold_in((seed, BANK_STREAM), b)``: the bank is a
    function of ``seed`` and shares no noise with the ``(seed, step)`` seeds of training steps
    or with evaluation, so a metric never scores the student on the pairs it was fitted to.

    Args:
        teacher: the trained teacher flow (its forward map is the one to distil).
        n: number of pairs.
        batch_size: rows per compiled teacher call (the last batch is trimmed).
        seed: integer seed of the bank.

    Raises:
        ValueError: for a non-positive ``n`` or ``batch_size``, or when the teacher produces
            non-finite samples (the count is named).
    """
    n = _positive_int("n", n)
    batch_size = min(_positive_int("batch_size", batch_size), n)
    draw = traces.traced(
        teacher, ("teacher_pairs", batch_size), lambda: _drawer(teacher, batch_size)
    )
    stream = tf.constant([seed, BANK_STREAM], tf.int32)
    seeds = [
        tf.random.experimental.stateless_fold_in(stream, b) for b in range(-(-n // batch_size))
    ]
    batches = [draw(tf.cast(s, tf.int32)) for s in seeds]
    z = tf.concat([zb for zb, _ in batches], axis=0)[:n]
    x = tf.concat([xb for _, xb in batches], axis=0)[:n]
    bad = int(tf.reduce_sum(tf.cast(~tf.reduce_all(tf.math.is_finite(x), axis=-1), tf.int32)))
    if bad:
        raise ValueError(f"build_teacher_pairs: the teacher gave {bad} of {n} non-finite samples")
    return TeacherPairs(z=z, x=x)


def keep_near_data(
    bank: TeacherPairs, data: np.ndarray, margin: float = 0.5
) -> tuple[TeacherPairs, int]:
    """The pairs whose sample lies in the data's bounding box widened by ``margin`` widths.

    A pair is kept when ``lo_i - margin w_i <= x_i <= hi_i + margin w_i`` for every coordinate
    ``i``, with ``[lo_i, hi_i]`` the data's range and ``w_i = hi_i - lo_i``. A teacher's sample
    far outside every training point is an error of its tails (an MAF extrapolating its
    exponential scale), and one such pair dominates a squared-error regression.

    Returns:
        the kept pairs and the number dropped.

    Raises:
        ValueError: when no pair is kept.
    """
    lo, hi = np.min(data, axis=0), np.max(data, axis=0)
    pad = margin * (hi - lo)
    x = bank.x.numpy()
    keep = np.all((x >= lo - pad) & (x <= hi + pad), axis=-1)
    if not keep.any():
        raise ValueError("keep_near_data: no teacher sample lies near the data")
    kept = TeacherPairs(z=tf.boolean_mask(bank.z, keep), x=tf.boolean_mask(bank.x, keep))
    return kept, bank.size - kept.size


def draw_pairs(
    bank: TeacherPairs, size: int, seed: tf.Tensor | Sequence[int]
) -> tuple[tf.Tensor, tf.Tensor]:
    """A minibatch of ``size`` pairs drawn uniformly with replacement from ``bank``.

    Args:
        bank: the pairs.
        size: rows to draw (a Python int, so the shape is static).
        seed: stateless seed, shape ``(2,)`` int tensor (e.g. ``(run seed, step)``).

    Returns:
        ``(z, x)``, each ``(size, D)``.
    """
    index = tf.random.stateless_uniform([size], seed, maxval=bank.size, dtype=tf.int32)
    return tf.gather(bank.z, index), tf.gather(bank.x, index)
