"""Evaluation of a trained flow: test log-likelihood, VI and distillation diagnostics.

Timing is measured separately, serially for all models (:mod:`flows_tf.timing`), with the
interleaved timer :func:`interleaved_times` defined here.

All log-likelihoods are in nats per example. Every function runs compiled (``tf.function``)
code with one trace per call site and returns plain Python floats / NumPy arrays, ready for a
flat metrics JSON. Non-finite results raise ``ValueError`` rather than reaching a table.
"""

import gc
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike
from tensorflow_probability import distributions as tfd

from flows_tf import objectives, traces
from flows_tf.traces import host, reuse_traces

__all__ = [
    "batched",
    "compiled_log_prob",
    "compiled_sampler",
    "density_grid",
    "forward_kl_to_teacher",
    "host",
    "interleaved_times",
    "log_prob",
    "loglik",
    "loglik_against_teacher",
    "mode_fractions",
    "mode_metrics",
    "n_params",
    "reuse_traces",
    "student_metrics",
    "vi_metrics",
]


def compiled_log_prob(
    flow: tfd.Distribution, jit_compile: bool = False
) -> Callable[[tf.Tensor], tf.Tensor]:
    """``flow.log_prob`` as a ``tf.function`` traced once for any batch size.

    With ``jit_compile`` XLA compiles it once per batch size it meets.
    """
    spec = tf.TensorSpec([None, *flow.event_shape], flow.dtype)
    return traces.traced(
        flow,
        ("log_prob", bool(jit_compile)),
        lambda: tf.function(flow.log_prob, input_signature=[spec], jit_compile=bool(jit_compile)),
    )


def _compiled_sample_and_log_prob(
    flow: tfd.TransformedDistribution, n: int
) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    def build() -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
        @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
        def draw(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return objectives.sample_and_log_prob(flow, n, seed=seed)

        return draw

    return traces.traced(flow, ("sample_and_log_prob", int(n)), build)


def batched(fn: Callable[[np.ndarray], tf.Tensor], x: ArrayLike, batch_size: int) -> np.ndarray:
    """``fn`` on consecutive slices of ``x`` of at most ``batch_size`` rows, concatenated."""
    x = np.asarray(x)
    parts = [fn(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,))


def log_prob(flow: tfd.Distribution, x: ArrayLike, batch_size: int = 4096) -> np.ndarray:
    """Per-example ``log q(x_i)``, shape ``(N,)``, computed in batches."""
    x = np.asarray(x, dtype=flow.dtype.as_numpy_dtype)
    return batched(compiled_log_prob(flow), x, batch_size)


def loglik(flow: tfd.Distribution, x: ArrayLike, batch_size: int = 4096) -> dict:
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
        >>> from flows_tf.flows import build_flow
        >>> flow = build_flow("gaussian", [2], tf.float64)  # untrained: N(0, I)
        >>> round(loglik(flow, np.zeros((4, 2)))["test_loglik"], 4)  # -log(2 pi)
        -1.8379
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


def _logsumexp(a: np.ndarray) -> float:
    m = np.max(a)
    return float(m + np.log(np.sum(np.exp(a - m))))


def vi_metrics(
    flow: tfd.TransformedDistribution,
    target: Callable[[tf.Tensor], tf.Tensor],
    n: int = 10000,
    seed: int = 0,
) -> dict:
    """ELBO, ``KL(q || p) = log Z - ELBO`` and the effective sample size of ``w = p~ / q``.

    With ``log w_j = log p~(x_j) - log q(x_j)`` on ``n`` draws ``x_j ~ q``: ``elbo = mean_j
    log w_j`` and ``kl_to_target = log Z - elbo``; both share the Monte Carlo standard error
    ``elbo_se = kl_to_target_se = std_j(log w_j) / sqrt(n)`` (``log Z`` is exact).
    ``ess`` is normalized to ``[0, 1]``: ``(sum w)^2 / (n sum w^2)`` (1: ``q`` equals ``p``).
    ``log_z_estimate`` is the importance-sampling estimate ``log mean w``.

    Args:
        flow: the variational distribution ``q``.
        target: callable ``(n, D) -> (n,)`` unnormalised log-density with attribute ``log_z``.
        n: number of samples from ``q``.
        seed: sampling seed.

    Example:
        >>> from flows_tf import build_flow, energy_target
        >>> flow = build_flow("planar", [2], num_layers=2)
        >>> vi_metrics(flow, energy_target("u1"), n=1000)["kl_to_target"] > 0
        True
    """
    x, log_q = _compiled_sample_and_log_prob(flow, n)(tf.constant([seed, 0], tf.int32))
    log_w = np.asarray(target(x), np.float64) - log_q.numpy().astype(np.float64)
    if not np.all(np.isfinite(log_w)):
        raise ValueError(
            f"non-finite importance weights for {int(np.sum(~np.isfinite(log_w)))} of {n} samples"
        )
    elbo = float(log_w.mean())
    se = float(log_w.std(ddof=1) / math.sqrt(n))
    log_z = getattr(target, "log_z", None)
    return {
        "elbo": elbo,
        "elbo_se": se,
        "kl_to_target": None if log_z is None else float(log_z) - elbo,
        "kl_to_target_se": None if log_z is None else se,
        "ess": math.exp(2 * _logsumexp(log_w) - _logsumexp(2 * log_w)) / n,
        "log_z_estimate": _logsumexp(log_w) - math.log(n),
    }


def student_metrics(
    student: tfd.TransformedDistribution,
    teacher: tfd.TransformedDistribution,
    n: int = 10000,
    seed: int = 0,
    *,
    test: ArrayLike | None = None,
    components: dict | None = None,
) -> dict:
    """Distillation diagnostics of a student against its teacher, as one flat dict of floats.

    - ``kl_to_teacher`` (+ ``_se``): the reverse ``KL(student || teacher)`` on ``n`` student
      samples, the number Parallel WaveNet's objective minimises; blind to a missing mode.
    - ``forward_kl_to_teacher`` (+ ``_se``): ``KL(teacher || student)`` on ``n`` teacher
      samples (:func:`forward_kl_to_teacher`; runs the student's inverse).
    - with ``test``: :func:`loglik_against_teacher` on the test data.
    - with ``components`` (a mixture's ``means``, ``scales``, ``weights``): :func:`mode_metrics`
      of the same ``n`` student samples against the weights and against the teacher's ``n``
      samples (a teacher's own deviation is what a faithful student inherits).

    The sampling speed-up is a timing, taken by the serial ``time_models`` step
    (:mod:`flows_tf.timing`) with nothing else on the CPU, not here.

    Example:
        >>> student_metrics(iaf, maf, test=x_test)["forward_kl_to_teacher"]  # doctest: +SKIP
    """
    x, log_q = _compiled_sample_and_log_prob(student, n)(_evaluation_seed(seed, 0))
    x = x.numpy()
    diff = log_q.numpy().astype(np.float64) - batched(compiled_log_prob(teacher), x, 4096).astype(
        np.float64
    )
    if not np.all(np.isfinite(diff)):
        raise ValueError("non-finite log-density ratio between student and teacher")
    out = {
        "kl_to_teacher": float(diff.mean()),
        "kl_to_teacher_se": float(diff.std(ddof=1) / math.sqrt(n)),
    }
    forward, x_teacher = _forward_kl_and_samples(student, teacher, n, seed)
    out.update(forward)
    if test is not None:
        out.update(loglik_against_teacher(student, teacher, test))
    if components is not None:
        out.update(mode_metrics(x, components, x_teacher=x_teacher))
    return out


def _evaluation_seed(seed: int, stream: int) -> tf.Tensor:
    """Stateless seed ``(seed, -1 - stream)``: training steps count ``(seed, step)`` from 0 up,
    so a distillation metric never reuses the noise of a training step."""
    return tf.constant([seed, -1 - stream], tf.int32)


def forward_kl_to_teacher(
    student: tfd.TransformedDistribution,
    teacher: tfd.TransformedDistribution,
    n: int = 10000,
    seed: int = 0,
) -> dict:
    """``KL(teacher || student) = E_{x ~ T}[log p_T(x) - log q_S(x)]`` on ``n`` teacher samples.

    The mass-covering direction: a mode the student misses makes ``log q_S`` very low there.
    ``log p_T`` comes from the teacher's sampling pass; ``log q_S`` runs the student's inverse
    (sequential for an IAF; evaluation only). The standard error is the Monte Carlo one,
    ``std / sqrt(n)``.

    Returns:
        ``{"forward_kl_to_teacher": float, "forward_kl_to_teacher_se": float}``.

    Raises:
        ValueError: when a log-density ratio is non-finite.
    """
    return _forward_kl_and_samples(student, teacher, n, seed)[0]


def _forward_kl_and_samples(
    student: tfd.TransformedDistribution, teacher: tfd.TransformedDistribution, n: int, seed: int
) -> tuple[dict, np.ndarray]:
    x, log_p = _compiled_sample_and_log_prob(teacher, n)(_evaluation_seed(seed, 1))
    x = x.numpy()
    log_q = batched(compiled_log_prob(student), x, 4096)
    diff = log_p.numpy().astype(np.float64) - log_q.astype(np.float64)
    if not np.all(np.isfinite(diff)):
        bad = int(np.sum(~np.isfinite(diff)))
        raise ValueError(f"forward KL: non-finite log-density ratio for {bad} of {n} samples")
    metrics = {
        "forward_kl_to_teacher": float(diff.mean()),
        "forward_kl_to_teacher_se": float(diff.std(ddof=1) / math.sqrt(n)),
    }
    return metrics, x


def loglik_against_teacher(
    student: tfd.Distribution, teacher: tfd.Distribution, test: ArrayLike, batch_size: int = 4096
) -> dict:
    """Test log-likelihoods of student and teacher, and their paired gap with its standard error.

    ``test_loglik_gap_to_teacher = mean_i [log q_S(x_i) - log p_T(x_i)]`` (negative: the student
    is worse), ``_se = std_i(...) / sqrt(N)``. The log-likelihoods are in the flows' (model)
    space; the gap is the same in pixel space, whose Jacobian term is shared by both.

    Returns:
        ``{"student_test_loglik", "teacher_test_loglik", "test_loglik_gap_to_teacher",
        "test_loglik_gap_to_teacher_se"}``, floats in nats per example.
    """
    student_ll = loglik(student, test, batch_size)["per_example"]
    teacher_ll = loglik(teacher, test, batch_size)["per_example"]
    gap = student_ll - teacher_ll
    return {
        "student_test_loglik": float(student_ll.mean()),
        "teacher_test_loglik": float(teacher_ll.mean()),
        "test_loglik_gap_to_teacher": float(gap.mean()),
        "test_loglik_gap_to_teacher_se": float(gap.std(ddof=1) / math.sqrt(len(gap))),
    }


def _checked_components(components: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means = np.asarray(components["means"], np.float64)
    scales = np.broadcast_to(np.asarray(components["scales"], np.float64), (len(means),))
    weights = np.asarray(components["weights"], np.float64)
    if means.ndim != 2 or weights.shape != (len(means),) or np.any(scales <= 0):
        raise ValueError(
            f"components: means must be (K, D), scales (K,) positive and weights (K,); got "
            f"{means.shape}, {np.shape(components['scales'])} and {weights.shape}"
        )
    return means, scales, weights


def mode_fractions(x: ArrayLike, components: dict) -> np.ndarray:
    """Fraction of the points ``x`` (N, D) assigned to each component of a Gaussian mixture.

    Each point goes to the component of highest responsibility,
    ``argmax_k [log w_k + log N(x; mu_k, s_k^2 I)]`` (the nearest mean for equal weights and
    scales).

    Args:
        x: points, shape ``(N, D)``.
        components: ``{"means": (K, D), "scales": (K,), "weights": (K,)}`` (e.g.
            :func:`flows_tf.datasets.toy.mixture_components`).

    Returns:
        ``(K,)`` fractions summing to 1.
    """
    means, scales, weights = _checked_components(components)
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(f"mode_fractions: x must be (N, {means.shape[1]}), got {x.shape}")
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    score = np.log(weights) - 0.5 * sq / scales**2 - means.shape[1] * np.log(scales)
    counts = np.bincount(np.argmax(score, axis=1), minlength=len(means))
    return counts / len(x)


def mode_metrics(x: ArrayLike, components: dict, x_teacher: ArrayLike | None = None) -> dict:
    """Per-mode fractions of the points ``x`` and how far they are from the mixture weights.

    Args:
        x: student samples ``(N, D)``.
        components: the mixture (see :func:`mode_fractions`).
        x_teacher: optional teacher samples ``(M, D)`` to compare with.

    Returns:
        ``mode_fraction_k`` for each component ``k``, ``mode_fraction_max_deviation``
        (``max_k |f_k - w_k|``) and ``modes_below_half_weight`` (components with
        ``f_k < w_k / 2``: the modes the points all but miss); with ``x_teacher`` also
        ``teacher_mode_fraction_max_deviation`` (``max_k |g_k - w_k|`` of the teacher's
        fractions ``g``) and ``mode_fraction_max_deviation_from_teacher`` (``max_k |f_k - g_k|``).
    """
    fractions = mode_fractions(x, components)
    weights = _checked_components(components)[2]
    out = {f"mode_fraction_{k}": float(f) for k, f in enumerate(fractions)}
    out["mode_fraction_max_deviation"] = float(np.max(np.abs(fractions - weights)))
    out["modes_below_half_weight"] = float(np.sum(fractions < weights / 2))
    if x_teacher is not None:
        teacher = mode_fractions(x_teacher, components)
        out["teacher_mode_fraction_max_deviation"] = float(np.max(np.abs(teacher - weights)))
        out["mode_fraction_max_deviation_from_teacher"] = float(np.max(np.abs(fractions - teacher)))
    return out


def _warm_up(fn: Callable[[], object], seconds: float, max_calls: int = 300) -> float:
    """Trace ``fn`` (one call), then call it for about ``seconds`` (at least once, at most
    ``max_calls`` times); the mean seconds per call of the latter calls."""
    np.asarray(fn())
    calls, start = 0, time.perf_counter()
    while True:
        np.asarray(fn())
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or calls >= max_calls:
            return elapsed / calls


def interleaved_times(
    fns: Sequence[Callable[[], object]],
    repeats: int,
    burst_seconds: float = 0.05,
    warmup_seconds: float = 0.2,
    prepare: Sequence[Callable[[], object]] | None = None,
) -> np.ndarray:
    """Seconds per call of each of ``fns`` in each of ``repeats`` rounds, after a warm-up.

    Warm-up: each function is traced, then called for about ``warmup_seconds`` (at most 300
    calls): a compiled IAF sampler at D=2 took 1.2-1.4 ms per call in its first ~250 calls and
    0.95 ms after, which biased a 5-round median. The functions then run interleaved (one
    measurement of each per round, in order) so that a change of machine load affects all of
    them alike. A measurement is one untimed call (the function's weights back in cache) and
    then a timed burst of ``k`` calls, ``k`` chosen from the warm-up so that a burst lasts about
    ``burst_seconds`` (``1 <= k <= 100``; ``k = 1`` for calls longer than that): a call timed
    alone straight after another model's is slower than in a loop of calls (a 5.5 ms MAF density
    pass on digits took 6.4 ms after a 138 ms IAF pass). The garbage collector is off while
    timing, as in :mod:`timeit`. The clock stops once the result is on the host.

    ``prepare[i]()``, if given, runs untimed before ``fns[i]``'s warm-up and before each of
    its untimed calls (e.g. it loads a model's weights into a graph shared with other models).
    A function listed more than once (models sharing one compiled graph) is warmed up once,
    and its bursts take their length from that warm-up.

    Returns:
        seconds per call, shape ``(len(fns), repeats)`` (take the median over axis 1).
    """
    prepare = list(prepare) if prepare is not None else [lambda: None] * len(fns)
    per_call = {}  # id(fn) -> seconds per call after its warm-up
    for fn, ready in zip(fns, prepare, strict=True):
        if id(fn) not in per_call:
            ready()
            per_call[id(fn)] = _warm_up(fn, warmup_seconds)
    calls = [max(1, min(100, int(burst_seconds / per_call[id(fn)]))) for fn in fns]
    times = [[] for _ in fns]
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection of many models' objects is not a call's cost
    try:
        for _ in range(repeats):
            for fn, ready, k, record in zip(fns, prepare, calls, times, strict=True):
                ready()
                np.asarray(fn())  # back in cache after the previous function's calls
                start = time.perf_counter()
                for _ in range(k):
                    np.asarray(fn())  # the result exists on the host before the next call
                record.append((time.perf_counter() - start) / k)
    finally:
        if collecting:
            gc.enable()
    return np.array(times)  # (len(fns), repeats)


def compiled_sampler(
    flow: tfd.Distribution, n: int, seed: Sequence[int] = (1, 2)
) -> Callable[[], tf.Tensor]:
    """``flow.sample(n)`` with a fixed stateless seed, as a ``tf.function`` without arguments."""
    seed = [int(s) for s in seed]
    return tf.function(lambda: flow.sample(n, seed=seed))


def n_params(flow: tf.Module) -> int:
    """Number of trainable scalars (MADE kernels count in full, masked entries included)."""
    return int(sum(np.prod(v.shape) for v in flow.trainable_variables))


def density_grid(
    flow: tfd.Distribution, bounds: tuple[float, float] = (-4.0, 4.0), n: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log q`` on an ``n x n`` grid of a 2-D flow.

    Returns:
        ``(xs, ys, logp)`` with ``xs, ys`` of shape ``(n,)`` and ``logp[i, j] = log q(xs[j],
        ys[i])``, shape ``(n, n)`` (ready for ``pcolormesh(xs, ys, exp(logp))``).

    Example:
        >>> from flows_tf.flows import build_flow
        >>> xs, ys, logp = density_grid(build_flow("gaussian", [2]), (-4, 4), 50)
        >>> logp.shape
        (50, 50)
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
