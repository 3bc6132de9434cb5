"""Training objectives: maximum likelihood, reverse KL (variational inference), distillation.

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
"""

import tensorflow as tf

__all__ = [
    "OBJECTIVES",
    "anneal_beta",
    "distillation_loss",
    "mle_loss",
    "reverse_kl_loss",
    "sample_and_log_prob",
]

OBJECTIVES = ("mle", "vi", "distill")


def mle_loss(flow, x):
    """Negative mean log-likelihood ``-(1/N) sum_i log q(x_i)``.

    Args:
        flow: the model, a ``tfd.TransformedDistribution``.
        x: data batch, shape ``(N, D)``.

    Example:
        >>> loss = mle_loss(flow, x_batch)  # doctest: +SKIP
    """
    return -tf.reduce_mean(flow.log_prob(x))


def sample_and_log_prob(flow, n, seed=None):
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
    base = flow.distribution
    z = base.sample(n, seed=seed)
    event_ndims = len(base.event_shape)
    x = flow.bijector.forward(z)
    fldj = flow.bijector.forward_log_det_jacobian(z, event_ndims=event_ndims)
    return x, base.log_prob(z) - fldj


def anneal_beta(step, anneal_steps):
    """Inverse temperature ``beta_t = min(1, 0.01 + t / T)``; ``T <= 0`` means no annealing.

    Args:
        step: training step ``t`` (int or scalar tensor).
        anneal_steps: ``T``, the number of steps until ``beta`` reaches 1.
    """
    if isinstance(anneal_steps, int | float) and anneal_steps <= 0:
        return tf.constant(1.0, tf.float64)
    t = tf.cast(step, tf.float64)
    return tf.minimum(1.0, 0.01 + t / tf.cast(anneal_steps, tf.float64))


def reverse_kl_loss(flow, log_target, n, *, beta=1.0, seed=None):
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
    return tf.reduce_mean(log_q - tf.cast(beta, log_q.dtype) * log_p)


def distillation_loss(student, teacher, n, *, beta=1.0, seed=None):
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
    log_p = tf.cast(teacher.log_prob(x), log_q.dtype)
    return tf.reduce_mean(log_q - tf.cast(beta, log_q.dtype) * log_p)
