"""Evaluation of a trained flow: test log-likelihood, VI and distillation diagnostics, timing.

All log-likelihoods are in nats per example. Every function runs compiled (``tf.function``)
code with one trace per call site and returns plain Python floats / NumPy arrays, ready for a
flat metrics JSON. Non-finite results raise ``ValueError`` rather than reaching a table.
"""

import math
import time

import numpy as np
import tensorflow as tf

from flows_tf import objectives

__all__ = [
    "batched",
    "compiled_log_prob",
    "density_grid",
    "log_prob",
    "loglik",
    "n_params",
    "student_metrics",
    "timing",
    "vi_metrics",
]


def compiled_log_prob(flow):
    """``flow.log_prob`` as a ``tf.function`` traced once for any batch size."""
    spec = tf.TensorSpec([None, *flow.event_shape], flow.dtype)
    return tf.function(flow.log_prob, input_signature=[spec])


def _compiled_sample_and_log_prob(flow, n):
    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
    def draw(seed):
        return objectives.sample_and_log_prob(flow, n, seed=seed)

    return draw


def batched(fn, x, batch_size: int) -> np.ndarray:
    """``fn`` on consecutive slices of ``x`` of at most ``batch_size`` rows, concatenated."""
    x = np.asarray(x)
    parts = [fn(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,))


def log_prob(flow, x, batch_size: int = 4096) -> np.ndarray:
    """Per-example ``log q(x_i)``, shape ``(N,)``, computed in batches."""
    x = np.asarray(x, dtype=flow.dtype.as_numpy_dtype)
    return batched(compiled_log_prob(flow), x, batch_size)


def loglik(flow, x, batch_size: int = 4096) -> dict:
    """Mean test log-likelihood and its standard error ``std(log q(x_i)) / sqrt(N)``.

    Args:
        flow: the model.
        x: test data, shape ``(N, D)``, ``N >= 2``.
        batch_size: rows per compiled ``log_prob`` call.

    Returns:
        ``{"test_loglik": float, "test_loglik_se": float, "n_test": int,
        "per_example": np.ndarray (N,)}`` (drop ``per_example`` before writing JSON).

    Raises:
        ValueError: when any ``log q(x_i)`` is NaN or infinite (the count is named).

    Example:
        >>> loglik(flow, x_test)["test_loglik"]  # doctest: +SKIP
    """
    per_example = log_prob(flow, x, batch_size)
    bad = int(np.sum(~np.isfinite(per_example)))
    if bad:
        raise ValueError(f"log_prob is non-finite for {bad} of {len(per_example)} examples")
    if len(per_example) < 2:
        raise ValueError("loglik needs at least 2 examples for a standard error")
    per_example = per_example.astype(np.float64)
    return {
        "test_loglik": float(per_example.mean()),
        "test_loglik_se": float(per_example.std(ddof=1) / math.sqrt(len(per_example))),
        "n_test": len(per_example),
        "per_example": per_example,
    }


def _logsumexp(a):
    m = np.max(a)
    return float(m + np.log(np.sum(np.exp(a - m))))


def vi_metrics(flow, target, n: int = 10000, seed: int = 0) -> dict:
    """ELBO, ``KL(q || p) = log Z - ELBO`` and the effective sample size of ``w = p~ / q``.

    ``ess`` is normalized to ``[0, 1]``: ``(sum w)^2 / (n sum w^2)`` (1: ``q`` equals ``p``).
    ``log_z_estimate`` is the importance-sampling estimate ``log mean w``.

    Args:
        flow: the variational distribution ``q``.
        target: callable ``(n, D) -> (n,)`` unnormalised log-density with attribute ``log_z``.
        n: number of samples from ``q``.
        seed: sampling seed.

    Example:
        >>> vi_metrics(flow, energy_target("u1"))["kl_to_target"]  # doctest: +SKIP
    """
    x, log_q = _compiled_sample_and_log_prob(flow, n)(tf.constant([seed, 0], tf.int32))
    log_w = np.asarray(target(x), np.float64) - log_q.numpy().astype(np.float64)
    if not np.all(np.isfinite(log_w)):
        raise ValueError(
            f"non-finite importance weights for {int(np.sum(~np.isfinite(log_w)))} of {n} samples"
        )
    elbo = float(log_w.mean())
    log_z = getattr(target, "log_z", None)
    return {
        "elbo": elbo,
        "kl_to_target": None if log_z is None else float(log_z) - elbo,
        "ess": math.exp(2 * _logsumexp(log_w) - _logsumexp(2 * log_w)) / n,
        "log_z_estimate": _logsumexp(log_w) - math.log(n),
    }


def student_metrics(
    student, teacher, n: int = 10000, seed: int = 0, timing_n: int = 1000, repeats: int = 5
) -> dict:
    """``KL(student || teacher)`` on student samples and the sampling speed-up over the teacher.

    ``sampling_speedup`` is the median over rounds of ``teacher seconds / student seconds`` for
    one batch of ``timing_n`` samples each, timed back to back (compiled, after a warm-up) in
    this process, so that changes of machine load cancel out.

    Example:
        >>> student_metrics(iaf, maf)["sampling_speedup"]  # doctest: +SKIP
    """
    x, log_q = _compiled_sample_and_log_prob(student, n)(tf.constant([seed, 0], tf.int32))
    diff = log_q.numpy().astype(np.float64) - batched(
        compiled_log_prob(teacher), x.numpy(), 4096
    ).astype(np.float64)
    if not np.all(np.isfinite(diff)):
        raise ValueError("non-finite log-density ratio between student and teacher")
    times = _round_times([_sampler(student, timing_n), _sampler(teacher, timing_n)], repeats)
    t_student, t_teacher = np.median(times, axis=1)
    return {
        "kl_to_teacher": float(diff.mean()),
        "kl_to_teacher_se": float(diff.std(ddof=1) / math.sqrt(n)),
        "sampling_speedup": float(np.median(times[1] / times[0])),
        "teacher_sample_seconds_per_1k": float(t_teacher) * 1000 / timing_n,
    }


def _round_times(fns, repeats):
    """Median wall time of each of ``fns`` over ``repeats`` rounds, after one warm-up call each.

    The functions run interleaved (one call of each per round) so that a change of machine
    load affects all of them alike.
    """
    for fn in fns:
        np.asarray(fn())  # warm-up: trace and first run
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            np.asarray(fn())  # the result exists on the host before the clock stops
            record.append(time.perf_counter() - start)
    return np.array(times)  # (len(fns), repeats)


def _median_seconds(fns, repeats):
    return [float(t) for t in np.median(_round_times(fns, repeats), axis=1)]


def _sampler(flow, n):
    return tf.function(lambda: flow.sample(n, seed=[1, 2]))


def timing(flow, n: int = 1000, repeats: int = 5) -> dict:
    """Seconds per 1,000 samples and per 1,000 ``log_prob`` evaluations.

    Each is the median over ``repeats`` calls of a compiled function on a batch of ``n``, after
    one warm-up call (tracing excluded); ``timing_batch_size`` records ``n``.

    Example:
        >>> timing(flow, n=1000, repeats=5)["sample_seconds_per_1k"]  # doctest: +SKIP
    """
    per_1k = 1000.0 / n
    x = flow.sample(n, seed=[3, 4])
    lp = tf.function(flow.log_prob)
    t_sample, t_log_prob = _median_seconds([_sampler(flow, n), lambda: lp(x)], repeats)
    return {
        "sample_seconds_per_1k": t_sample * per_1k,
        "logprob_seconds_per_1k": t_log_prob * per_1k,
        "timing_batch_size": n,
        "timing_repeats": repeats,
    }


def n_params(flow) -> int:
    """Number of trainable scalars (MADE kernels count in full, masked entries included)."""
    return int(sum(np.prod(v.shape) for v in flow.trainable_variables))


def density_grid(flow, bounds=(-4.0, 4.0), n: int = 200):
    """``log q`` on an ``n x n`` grid of a 2-D flow.

    Returns:
        ``(xs, ys, logp)`` with ``xs, ys`` of shape ``(n,)`` and ``logp[i, j] = log q(xs[j],
        ys[i])``, shape ``(n, n)`` (ready for ``pcolormesh(xs, ys, exp(logp))``).

    Example:
        >>> xs, ys, logp = density_grid(flow, (-4, 4), 100)  # doctest: +SKIP
    """
    if tuple(flow.event_shape) != (2,):
        raise ValueError(f"density_grid needs a 2-D flow, got event shape {flow.event_shape}")
    lo, hi = bounds
    xs = np.linspace(lo, hi, n)
    ys = np.linspace(lo, hi, n)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    logp = log_prob(flow, points).reshape(n, n)
    return xs, ys, logp
