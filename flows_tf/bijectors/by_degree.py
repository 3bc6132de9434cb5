"""MAF's sequential direction in one MADE pass's arithmetic, unit by unit in order of degree.

TFP's ``MaskedAutoregressiveFlow._forward`` solves ``y_i = u_i exp(s_i(y_{<i})) + t_i(y_{<i})``
with D full MADE passes (the i-th pass fixes ``y_i``): D times the arithmetic of one pass. But a
MADE unit of degree ``k`` reads only units of degree ``<= k`` below it, and output ``i`` only
units of degree ``< i``. So once ``y_1 .. y_k`` are known, the units of degree ``k`` are final
and never need recomputing. :func:`forward_by_degree` walks ``k = 1 .. D``: it emits ``y_k``
from the output pre-activations accumulated so far, adds ``y_k``'s row to the first layer's
pre-activations, and pushes each layer's newly final units of degree ``k`` into the next
layer's (rank-``n_k`` updates). Every weight is used once: the same values as the D passes up
to rounding, D small sequential steps instead of D full passes. This is MAF's sampling and
IAF's density direction.

:func:`solve_by_degree` is the same walk with its gradient by implicit differentiation instead
of autodiff through the walk, which replays its ~20 ops per degree and layer backwards: 3x the
forward's time for IAF on digits (at D = 2 autodiff is the faster). ``y`` solves
``y = r(y, u)``, ``r = u exp(s(y)) + t(y)``, with ``N = dr/dy`` strictly lower-triangular.
For cotangents ``(g_y, g_l)`` of ``(y, log_det)`` the gradient is
``v^T dr/d(u, theta) + g_l dlog_det/dtheta`` with ``v = (I - N)^{-T} a`` and
``a = g_y + g_l dlog_det/dy``: one MADE pass at the solution and a back-substitution
``v_i = a_i + sum_{j>i} N_ji v_j`` for ``i = D .. 1``, which is the walk run backwards
(:func:`_adjoint_walk`: a unit of degree ``k`` has its whole cotangent once
``v_D .. v_{k+1}`` are known).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability.python.bijectors import masked_autoregressive as made_lib

from flows_tf.bijectors.conditioners import MADEAffine

__all__ = ["forward_by_degree", "solve_by_degree", "check_by_degree"]

_create_degrees = made_lib._create_degrees  # noqa: SLF001 (TFP's own degree assignment)


@dataclass(frozen=True)
class _Plan:
    """Per hidden layer, the column slice of the units of each degree ``k = 0 .. D``."""

    spans: tuple[tuple[tuple[int, int], ...], ...]


def check_by_degree(made: tfb.AutoregressiveNetwork) -> None:
    """Raise ``ValueError`` unless :func:`forward_by_degree` can walk ``made`` in degree order."""
    problems = []
    if made._params != 2:  # noqa: SLF001
        problems.append(f"params={made._params} (needs 2: shift and log-scale)")  # noqa: SLF001
    if made._conditional:  # noqa: SLF001
        problems.append("a conditional MADE")
    if not made._use_bias:  # noqa: SLF001
        problems.append("a MADE without biases")
    if made._input_order_param != "left-to-right":  # noqa: SLF001
        problems.append(f"input_order={made._input_order_param!r} (needs 'left-to-right')")  # noqa: SLF001
    if made._hidden_degrees != "equal":  # noqa: SLF001
        problems.append(f"hidden_degrees={made._hidden_degrees!r} (needs 'equal', sorted)")  # noqa: SLF001
    if made._activation is not tf.nn.relu and made._activation != "relu":  # noqa: SLF001
        problems.append(f"activation={made._activation!r} (needs relu)")  # noqa: SLF001
    if problems:
        raise ValueError("sequential='by_degree' cannot walk " + "; ".join(problems))


def _plan(made: tfb.AutoregressiveNetwork) -> _Plan:
    d = made._event_size  # noqa: SLF001
    degrees = _create_degrees(d, made._hidden_units, "left-to-right", "equal")  # noqa: SLF001
    spans = []
    for layer_degrees in degrees[1:]:
        edges = np.searchsorted(layer_degrees, np.arange(d + 2), side="left")  # spans cover all
        spans.append(tuple((int(edges[k]), int(edges[k + 1])) for k in range(d + 1)))
    return _Plan(tuple(spans))


def _masked_weights(made: tfb.AutoregressiveNetwork) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """Kernels times their masks (training keeps them masked; multiplying is cheap insurance)."""
    variables = made.trainable_variables
    kernels, biases = variables[0::2], variables[1::2]
    masked = [k * tf.constant(m, k.dtype) for k, m in zip(kernels, made._masks, strict=True)]  # noqa: SLF001
    return masked, list(biases)


def forward_by_degree(affine: MADEAffine, u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Solve ``y = u exp(s(y)) + t(y)`` (``affine``'s MADE, any batch shape, D static).

    Returns:
      ``(y, log_det)`` with ``log_det = sum_i s_i(y_{<i})``, i.e. ``log|det dy/du|``.
    """
    return _walk(affine, _plan(affine.made), *_masked_weights(affine.made), u)


def _walk(
    affine: MADEAffine,
    plan: _Plan,
    kernels: list[tf.Tensor],
    biases: list[tf.Tensor],
    u: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`forward_by_degree` on the MADE's masked weights, already read."""
    d = affine.made._event_size  # noqa: SLF001
    batch = tf.shape(u)[:-1]
    # pre[l]: pre-activations of hidden layer l (the last entry: the output layer), filled in as
    # the units they read become final; column 2i / 2i + 1 of the output are y_i's shift / scale
    pre = [tf.broadcast_to(b, tf.concat([batch, tf.shape(b)], 0)) for b in biases]
    # every weight slice the walk reads, cut once: the first kernel by input row, the others
    # by the degree spans of the units they read
    input_rows = tf.unstack(kernels[0], axis=0)
    blocks = [
        tf.split(kernel, [hi - lo for lo, hi in spans], axis=0)
        for kernel, spans in zip(kernels[1:], plan.spans, strict=True)
    ]

    def push(degree: int) -> None:
        """Feed each layer's units of ``degree`` (now final) into the layer above."""
        for layer, spans in enumerate(plan.spans):
            lo, hi = spans[degree]
            if hi > lo:
                unit = tf.nn.relu(pre[layer][..., lo:hi])
                pre[layer + 1] = pre[layer + 1] + tf.matmul(unit, blocks[layer][degree])

    push(0)
    noise = tf.unstack(u, num=d, axis=-1)
    ys, log_scales = [], []
    for i in range(d):
        c, raw = tf.unstack(pre[-1][..., 2 * i : 2 * i + 2], num=2, axis=-1)
        shift, log_scale = affine.shift_and_log_scale(c, raw)
        y = noise[i] * tf.exp(log_scale) + shift
        ys.append(y)
        log_scales.append(log_scale)
        if i + 1 < d:  # y_i has degree i + 1; the units of that degree are now final
            pre[0] = pre[0] + y[..., None] * input_rows[i]
            push(i + 1)
    return tf.stack(ys, axis=-1), tf.add_n(log_scales)


def _made_pass(
    kernels: list[tf.Tensor], biases: list[tf.Tensor], y: tf.Tensor
) -> tuple[list[tf.Tensor], tf.Tensor]:
    """One MADE pass: the hidden layers' pre-activations and the output (``[..., 2D]``)."""
    hidden_pre, h = [], y
    for kernel, bias in zip(kernels[:-1], biases[:-1], strict=True):
        hidden_pre.append(tf.matmul(h, kernel) + bias)
        h = tf.nn.relu(hidden_pre[-1])
    return hidden_pre, tf.matmul(h, kernels[-1]) + biases[-1]


def _adjoint_walk(
    plan: _Plan,
    kernels: list[tf.Tensor],
    hidden_pre: list[tf.Tensor],
    dr_dout: tf.Tensor,
    a: tf.Tensor,
) -> tf.Tensor:
    """``v = (I - N)^{-T} a`` by back-substitution in degree order, ``N = dr/dy``.

    ``dr_dout[..., 2i:2i + 2]`` is ``dr_i / d(c_i, raw_i)`` (the MADE's two outputs of ``y_i``).
    Walking ``i = D - 1 .. 0``: ``v_i`` is final; its output pair's cotangent enters the top
    hidden layer, and each layer's units of degree ``i`` (now final) pass theirs down, until the
    first layer's reach the inputs of degree ``< i + 1``.
    """
    d = a.shape[-1]
    depth = len(hidden_pre)
    a_cols = tf.unstack(a, num=d, axis=-1)
    dr_pairs = tf.split(dr_dout, d, axis=-1)
    out_rows = tf.split(tf.transpose(kernels[-1]), d, axis=0)  # y_i's [2, H_top] rows
    sizes = [[hi - lo for lo, hi in spans] for spans in plan.spans]
    rows_below = [
        tf.split(tf.transpose(k), n, axis=0) for k, n in zip(kernels[:-1], sizes, strict=True)
    ]
    active = [
        tf.split(tf.cast(pre > 0, pre.dtype), n, axis=-1)
        for pre, n in zip(hidden_pre, sizes, strict=True)
    ]
    g_hidden = [tf.zeros_like(pre) for pre in hidden_pre]  # cotangents of the activations
    g_in, vs = None, [None] * d
    for i in reversed(range(d)):
        vs[i] = a_cols[i] if g_in is None else a_cols[i] + g_in[..., i]
        g_top = tf.matmul(vs[i][..., None] * dr_pairs[i], out_rows[i])
        if depth == 0:
            g_in = g_top if g_in is None else g_in + g_top
            continue
        g_hidden[-1] = g_hidden[-1] + g_top
        for layer in reversed(range(depth)):
            lo, hi = plan.spans[layer][i]
            if hi == lo:
                continue
            g_pre = g_hidden[layer][..., lo:hi] * active[layer][i]
            g_down = tf.matmul(g_pre, rows_below[layer][i])
            if layer > 0:
                g_hidden[layer - 1] = g_hidden[layer - 1] + g_down
            else:
                g_in = g_down if g_in is None else g_in + g_down
    return tf.stack(vs, axis=-1)


def solve_by_degree(affine: MADEAffine, u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`forward_by_degree`'s ``(y, log_det)``, differentiated implicitly (module doc).

    The gradients with respect to ``u`` and the MADE's weights are autodiff's through the walk
    up to rounding. The masked weights enter as inputs of the custom gradient, read outside it:
    a gradient that reads variables itself breaks ``tf.cond``'s gradient.
    """
    made = affine.made
    plan = _plan(made)
    kernels, biases = _masked_weights(made)
    n = len(kernels)

    @tf.custom_gradient
    def solve(u: tf.Tensor, *weights: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], Callable]:
        y, log_det = _walk(affine, plan, list(weights[:n]), list(weights[n:]), u)

        def grad(g_y: tf.Tensor, g_log_det: tf.Tensor) -> list[tf.Tensor]:
            at = tf.stop_gradient(y)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch([at, u, *weights])
                hidden_pre, out = _made_pass(weights[:n], weights[n:], at)
                tape.watch(out)
                shift, log_scale = affine.shift_and_log_scale(out[..., 0::2], out[..., 1::2])
                r = u * tf.exp(log_scale) + shift
                direct = tf.reduce_sum(g_log_det * tf.reduce_sum(log_scale, axis=-1))
            a = g_y + tape.gradient(direct, at)
            dr_dout = tape.gradient(r, out)  # elementwise in i: the pair (c_i, raw_i) per r_i
            v = tf.stop_gradient(_adjoint_walk(plan, weights[:n], hidden_pre, dr_dout, a))
            with tape:
                total = direct + tf.reduce_sum(v * r)
            grads = tape.gradient(total, [u, *weights])
            del tape
            return [
                tf.zeros_like(w) if g is None else g
                for g, w in zip(grads, [u, *weights], strict=True)
            ]

        return (y, log_det), grad

    return solve(u, *kernels, *biases)
