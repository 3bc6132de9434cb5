"""Training losses: maximum likelihood, reverse KL (variational inference), distillation.

Every loss is a scalar to *minimise* and takes a flow built by :func:`flows_tf.build_flow` (a
``tfd.TransformedDistribution`` whose bijector maps base noise ``z`` forward to data ``x``).

- :func:`mle_loss`: ``-(1/N) sum_i log q(x_i)`` on a batch of data.
- :func:`reverse_kl_loss`: the negative annealed ELBO ``E_q[log q(x) - beta_t log p~(x)]`` with
  ``beta_t = min(1, 0.01 + t / T)`` (Rezende and Mohamed, 2015, arXiv:1505.05770).
- :func:`distillation_loss`: ``KL(q_student || p_teacher) = E_q[log q(x) - log p(x)]`` on the
  student's own samples (probability density distillation, van den Oord et al., 2017,
  arXiv:1711.10433), optionally annealed the same way (``beta_t log p``).

The reverse-KL and distillation losses draw ``x`` and ``log q(x)`` from one forward pass
(:func:`sample_and_log_prob`): ``z ~ N(0, I)``, ``x = f(z)``,
``log q(x) = log N(z) - log |det df/dz|``. For an IAF (``tfb.Invert(MAF)``) that pass is
parallel; ``flow.log_prob(x)`` would run the sequential inverse instead.

Reverse KL is mode-seeking: covering a fraction ``m`` of the teacher's mass costs only
``-log m`` and a mode without student samples sends no gradient. The mass-covering
distillation losses below pin the student ``S`` to the teacher ``T`` (both map noise to data):

- :func:`paired_regression_loss`: ``(1/N) sum_i ||S(z_i) - T(z_i)||^2`` on a cached bank of
  teacher pairs (:mod:`flows_tf.distill_bank`; the teacher's sampling is sequential for a MAF);
- :func:`latent_regression_loss`: ``E_z ||T^{-1}(S(z)) - z||^2`` (one parallel teacher density
  pass for a MAF, the cost of reverse KL);
- :func:`anchored_distillation_loss`: ``KL(S || T) + lambda * anchor``, the anchor one of the
  two regressions (fine-tuning after a regression stage);
- :func:`forward_kl_loss` and :func:`mass_covering_distillation_loss`: ``KL(S || T) + lambda
  E_{x ~ T}[-log S(x)]``, whose second term runs the student's *inverse* (sequential for an
  IAF), so it takes a bounded sub-batch of teacher samples.

References: van den Oord et al. (2017), Parallel WaveNet, arXiv:1711.10433; Huang et al. (2019),
Probability distillation: a caveat and alternatives (UAI 2019); Baranchuk et al. (2021),
Distilling the knowledge from normalizing flows, arXiv:2106.12699.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = [
    "MAX_INVERSE_ROWS",
    "anchored_distillation_loss",
    "anneal_beta",
    "distillation_loss",
    "forward_kl_loss",
    "latent_regression_loss",
    "mass_covering_distillation_loss",
    "mle_loss",
    "paired_regression_loss",
    "reverse_kl_loss",
    "sample_and_log_prob",
    "teacher_latent_and_log_prob",
]

MAX_INVERSE_ROWS = 1024  # default bound on the rows a training loss may push through S^{-1}


def _scalar(value: float | tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """A weight or temperature in ``dtype``; a Python float is not rounded through float32."""
    return tf.cast(value, dtype) if tf.is_tensor(value) else tf.constant(value, dtype)


def _weight(name: str, value: float | tf.Tensor) -> float | tf.Tensor:
    """A loss weight: a tensor, or a Python number that must be finite and >= 0."""
    if not tf.is_tensor(value) and not (isinstance(value, numbers.Real) and 0 <= value < math.inf):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    return value


def _fresh(x: tf.Tensor) -> tf.Tensor:
    """``x`` as a new tensor, so that no bijector cache can answer for it.

    TFP shares a cache between bijector instances with equal constructor ``parameters``; two
    flows' data-side affine layers built with the same arguments (but different variables)
    would otherwise hand the teacher the student's own intermediate values.
    """
    return tf.identity(x)


def mle_loss(flow: tfd.Distribution, x: tf.Tensor) -> tf.Tensor:
    """Negative mean log-likelihood ``-(1/N) sum_i log q(x_i)``.

    Args:
        flow: the model, a ``tfd.TransformedDistribution``.
        x: data batch, shape ``(N, D)``.

    Example:
        >>> loss = mle_loss(flow, x_batch)  # doctest: +SKIP
    """
    return -tf.reduce_mean(flow.log_prob(x))


def sample_and_log_prob(
    flow: tfd.TransformedDistribution,
    n: int | tf.Tensor,
    seed: tf.Tensor | Sequence[int] | int | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Draw ``n`` samples and their log-density from one forward pass of the flow.

    ``z ~ base``, ``x = f(z)``, ``log q(x) = log base(z) - log |det df/dz|(z)``: no call to
    the inverse, so an IAF never runs its sequential direction.

    Args:
        flow: a ``tfd.TransformedDistribution``.
        n: number of samples (int or scalar int tensor).
        seed: a stateless seed (shape ``(2,)`` int tensor), an int, or None.

    Returns:
        ``(x, log_q)`` of shapes ``(n, D)`` and ``(n,)``.

    Example:
        >>> x, log_q = sample_and_log_prob(flow, 256, seed=[0, 1])  # doctest: +SKIP
    """
    _, x, log_q = _forward_pass(flow, n, seed)
    return x, log_q


def _forward_pass(
    flow: tfd.TransformedDistribution,
    n: int | tf.Tensor,
    seed: tf.Tensor | Sequence[int] | int | None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(z, x, log q(x))`` of :func:`sample_and_log_prob`, keeping the noise ``z``."""
    base = flow.distribution
    z = base.sample(n, seed=seed)
    event_ndims = len(base.event_shape)
    x = flow.bijector.forward(z)
    fldj = flow.bijector.forward_log_det_jacobian(z, event_ndims=event_ndims)
    return z, x, base.log_prob(z) - fldj


def anneal_beta(step: int | tf.Tensor, anneal_steps: int | float | tf.Tensor) -> tf.Tensor:
    """Inverse temperature ``beta_t = min(1, 0.01 + t / T)``; ``T <= 0`` means no annealing.

    Args:
        step: training step ``t`` (int, scalar tensor, or a vector of steps: one eager call
            for a whole block of them).
        anneal_steps: ``T``, the number of steps until ``beta`` reaches 1.
    """
    if isinstance(anneal_steps, int | float) and anneal_steps <= 0:
        return tf.constant(1.0, tf.float64)
    t = tf.cast(step, tf.float64)
    return tf.minimum(1.0, 0.01 + t / tf.cast(anneal_steps, tf.float64))


def reverse_kl_loss(
    flow: tfd.TransformedDistribution,
    log_target: Callable[[tf.Tensor], tf.Tensor],
    n: int | tf.Tensor,
    *,
    beta: float | tf.Tensor = 1.0,
    seed: tf.Tensor | Sequence[int] | int | None = None,
) -> tf.Tensor:
    """Negative annealed ELBO ``E_q[log q(x) - beta log p~(x)]`` by Monte Carlo on ``n`` samples.

    At ``beta = 1`` this equals ``KL(q || p) - log Z`` for ``p = p~ / Z``.

    Args:
        flow: the variational distribution ``q``.
        log_target: callable, ``(n, D)`` points -> ``(n,)`` unnormalised log-density ``log p~``.
        n: Monte Carlo sample size.
        beta: inverse temperature (see :func:`anneal_beta`).
        seed: stateless seed for the samples.

    Example:
        >>> loss = reverse_kl_loss(flow, energy_target("u1"), 256, beta=0.5)  # doctest: +SKIP

    References:
        Rezende and Mohamed (2015), Variational inference with normalizing flows,
        arXiv:1505.05770.
    """
    x, log_q = sample_and_log_prob(flow, n, seed=seed)
    log_p = tf.cast(log_target(x), log_q.dtype)
    return tf.reduce_mean(log_q - _scalar(beta, log_q.dtype) * log_p)


def distillation_loss(
    student: tfd.TransformedDistribution,
    teacher: tfd.Distribution,
    n: int | tf.Tensor,
    *,
    beta: float | tf.Tensor = 1.0,
    seed: tf.Tensor | Sequence[int] | int | None = None,
) -> tf.Tensor:
    """``KL(student || teacher) = E_q[log q(x) - log p_teacher(x)]`` on the student's samples.

    The student's ``log q`` comes from the pass that produced ``x``; the teacher is only
    evaluated (``teacher.log_prob``, one parallel pass for a MAF). Gradients reach the teacher's
    variables too, so train on ``student.trainable_variables`` only. With ``beta < 1`` the loss
    is ``E_q[log q - beta log p]``, the KL to the tempered ``p^beta`` up to a constant: early
    in training the entropy term keeps the student wide, so reverse KL (mode-seeking) does not
    lock onto the first modes it meets.

    Args:
        student: flow with a cheap forward direction (e.g. IAF).
        teacher: trained flow with a cheap density (e.g. MAF).
        n: Monte Carlo sample size.
        beta: inverse temperature (see :func:`anneal_beta`); 1 is the plain KL.
        seed: stateless seed for the samples.

    Example:
        >>> loss = distillation_loss(iaf, maf, 256, seed=[0, 3])  # doctest: +SKIP

    References:
        van den Oord et al. (2017), Parallel WaveNet: fast high-fidelity speech synthesis,
        arXiv:1711.10433.
    """
    x, log_q = sample_and_log_prob(student, n, seed=seed)
    log_p = tf.cast(teacher.log_prob(_fresh(x)), log_q.dtype)
    return tf.reduce_mean(log_q - _scalar(beta, log_q.dtype) * log_p)


def teacher_latent_and_log_prob(
    teacher: tfd.TransformedDistribution, x: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """``u = T^{-1}(x)`` and ``log p_T(x) = log N(u) + log |det dT^{-1}/dx|`` in one pass.

    The teacher's inverse caches its log-determinant (one MADE pass per layer for a MAF), so
    the latent regression and the reverse KL share a single teacher evaluation.

    Args:
        teacher: a flow with a cheap inverse (e.g. MAF).
        x: points, shape ``(N, D)``.

    Returns:
        ``(u, log_p)`` of shapes ``(N, D)`` and ``(N,)``.
    """
    base = teacher.distribution
    event_ndims = len(base.event_shape)
    x = _fresh(x)
    u = teacher.bijector.inverse(x)
    ildj = teacher.bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims)
    return u, base.log_prob(u) + ildj


def _squared_distance(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-example ``||a - b||^2`` summed over the event, shape ``(N,)``."""
    return tf.reduce_sum(tf.math.squared_difference(a, b), axis=-1)


def paired_regression_loss(
    student: tfd.TransformedDistribution, z: tf.Tensor, x_teacher: tf.Tensor
) -> tf.Tensor:
    """Paired ("instructive") distillation: ``(1/N) sum_i ||S(z_i) - T(z_i)||^2``.

    The student maps the same noise the teacher mapped; ``(z_i, T(z_i))`` come from a cached
    bank (:func:`flows_tf.distill_bank.build_teacher_pairs`). One parallel student pass for an
    IAF. The loss is zero only when the student's map equals the teacher's on the bank, so
    every mode the teacher puts mass on pulls student samples towards it.

    Args:
        student: flow with a cheap forward direction (e.g. IAF).
        z: base noise, shape ``(N, D)``.
        x_teacher: the teacher's samples ``T(z)``, shape ``(N, D)``.

    Example:
        >>> z, x = distill_bank.draw_pairs(bank, 256, seed=[0, 1])  # doctest: +SKIP
        >>> loss = paired_regression_loss(iaf, z, x)  # doctest: +SKIP

    References:
        Baranchuk et al. (2021), Distilling the knowledge from normalizing flows,
        arXiv:2106.12699.
    """
    x = student.bijector.forward(_fresh(tf.cast(z, student.dtype)))
    return tf.reduce_mean(_squared_distance(x, tf.cast(x_teacher, student.dtype)))


def latent_regression_loss(
    student: tfd.TransformedDistribution,
    teacher: tfd.TransformedDistribution,
    n: int | tf.Tensor,
    *,
    seed: tf.Tensor | Sequence[int] | int | None = None,
) -> tf.Tensor:
    """Latent regression ``E_z ||T^{-1}(S(z)) - z||^2`` on ``n`` student samples.

    Zero exactly when ``S = T`` on the samples; costs one parallel student pass and one teacher
    density-direction pass (parallel for a MAF), the same as reverse KL. It is still computed
    on the student's own samples only: measured on eight_gaussians from a Gaussian start it
    collapsed onto 3 of 8 modes (samples between the teacher's modes get huge ``T^{-1}``), so
    use it as an anchor of a student that already covers the modes, not as a first stage.

    Args:
        student: flow with a cheap forward direction (e.g. IAF).
        teacher: flow with a cheap inverse (e.g. MAF); train ``student.trainable_variables``.
        n: number of noise draws.
        seed: stateless seed for the noise.

    Example:
        >>> loss = latent_regression_loss(iaf, maf, 256, seed=[0, 2])  # doctest: +SKIP

    References:
        Huang et al. (2019), Probability distillation: a caveat and alternatives, UAI 2019.
    """
    z, x, _ = _forward_pass(student, n, seed)
    u, _ = teacher_latent_and_log_prob(teacher, x)
    return tf.reduce_mean(_squared_distance(tf.cast(u, z.dtype), z))


def anchored_distillation_loss(
    student: tfd.TransformedDistribution,
    teacher: tfd.TransformedDistribution,
    n: int | tf.Tensor,
    *,
    anchor_weight: float | tf.Tensor,
    pairs: tuple[tf.Tensor, tf.Tensor] | None = None,
    beta: float | tf.Tensor = 1.0,
    seed: tf.Tensor | Sequence[int] | int | None = None,
) -> tf.Tensor:
    """Reverse KL plus an anchor: ``E_q[log q - beta log p_T] + lambda * anchor``.

    The anchor is the paired regression on ``pairs = (z_b, T(z_b))`` when given, else the
    latent regression ``||T^{-1}(x) - z||^2`` on the same samples ``x = S(z)`` as the KL (free:
    the teacher's inverse is computed for ``log p_T`` anyway). Meant as the fine-tuning stage
    after a regression stage: the KL sharpens the density, the anchor keeps every mode.

    Args:
        student: flow with a cheap forward direction (e.g. IAF).
        teacher: flow with a cheap inverse (e.g. MAF).
        n: Monte Carlo sample size of the KL (and of the latent anchor).
        anchor_weight: ``lambda >= 0``.
        pairs: ``(z, x_teacher)`` batch for the paired anchor, or None for the latent anchor.
        beta: inverse temperature of the teacher (see :func:`anneal_beta`).
        seed: stateless seed for the samples.

    Example:
        >>> loss = anchored_distillation_loss(iaf, maf, 256, anchor_weight=0.1)  # doctest: +SKIP

    References:
        van den Oord et al. (2017), arXiv:1711.10433; Baranchuk et al. (2021),
        arXiv:2106.12699; Huang et al. (2019), UAI 2019.
    """
    anchor_weight = _weight("anchor_weight", anchor_weight)
    z, x, log_q = _forward_pass(student, n, seed)
    u, log_p = teacher_latent_and_log_prob(teacher, x)
    kl = tf.reduce_mean(log_q - _scalar(beta, log_q.dtype) * tf.cast(log_p, log_q.dtype))
    if pairs is None:
        anchor = tf.reduce_mean(_squared_distance(tf.cast(u, z.dtype), z))
    else:
        anchor = paired_regression_loss(student, *pairs)
    return kl + _scalar(anchor_weight, kl.dtype) * anchor


def forward_kl_loss(
    student: tfd.Distribution, x_teacher: tf.Tensor, *, max_rows: int = MAX_INVERSE_ROWS
) -> tf.Tensor:
    """``-(1/M) sum_j log S(x_j)`` on teacher samples: ``KL(T || S)`` up to the constant ``H(T)``.

    This evaluates the student's density, i.e. runs its *inverse*: sequential for an IAF (D
    passes per layer), so it takes a bounded sub-batch of at most ``max_rows`` rows (teacher
    samples from the bank, or training data).

    Args:
        student: the student flow.
        x_teacher: teacher samples (or data), shape ``(M, D)`` with a static ``M <= max_rows``.
        max_rows: the bound on ``M``.

    Raises:
        ValueError: when ``M`` is unknown or exceeds ``max_rows``.

    Example:
        >>> loss = forward_kl_loss(iaf, bank.x[:64])  # doctest: +SKIP
    """
    rows = x_teacher.shape[0]
    if rows is None or rows > max_rows:
        raise ValueError(
            f"forward_kl_loss: x_teacher has {rows} rows; the student's inverse is sequential, "
            f"so pass a sub-batch with a static size of at most max_rows={max_rows}"
        )
    return -tf.reduce_mean(student.log_prob(_fresh(tf.cast(x_teacher, student.dtype))))


def mass_covering_distillation_loss(
    student: tfd.TransformedDistribution,
    teacher: tfd.Distribution,
    n: int | tf.Tensor,
    x_teacher: tf.Tensor,
    *,
    forward_weight: float | tf.Tensor,
    beta: float | tf.Tensor = 1.0,
    seed: tf.Tensor | Sequence[int] | int | None = None,
    max_rows: int = MAX_INVERSE_ROWS,
) -> tf.Tensor:
    """Reverse plus forward KL: ``E_q[log q - beta log p_T] + lambda E_{x ~ T}[-log S(x)]``.

    The first term is Parallel WaveNet's distillation on ``n`` student samples (parallel); the
    second, :func:`forward_kl_loss`, is mass-covering but runs the student's inverse on the
    bounded sub-batch ``x_teacher``.

    Args:
        student: flow with a cheap forward direction (e.g. IAF).
        teacher: flow with a cheap inverse (e.g. MAF).
        n: Monte Carlo sample size of the reverse KL.
        x_teacher: teacher samples or data, ``(M, D)``, ``M <= max_rows``.
        forward_weight: ``lambda >= 0``.
        beta: inverse temperature of the teacher.
        seed: stateless seed for the student's samples.
        max_rows: bound on ``M`` (see :func:`forward_kl_loss`).

    Example:
        >>> loss = mass_covering_distillation_loss(iaf, maf, 256, x_sub, forward_weight=1.0)
        ... # doctest: +SKIP

    References:
        van den Oord et al. (2017), arXiv:1711.10433; Huang et al. (2019), UAI 2019.
    """
    forward_weight = _weight("forward_weight", forward_weight)
    kl = distillation_loss(student, teacher, n, beta=beta, seed=seed)
    forward = forward_kl_loss(student, x_teacher, max_rows=max_rows)
    return kl + _scalar(forward_weight, kl.dtype) * forward
