"""The rational-quadratic spline and the whole-batch solves against TFP's own, in float64.

TFP's ``tfb.RationalQuadraticSpline`` and ``tfb.ScaleMatvecLU`` are the references: the same
map from the same parameters, so values, log-determinants and parameter gradients must agree to
rounding, on inputs inside every bin, on the knots and outside the spline's range.
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from flows_tf.bijectors import AffineNorm, RationalQuadraticSpline, ScaleMatvecLU
from flows_tf.bijectors.solve import solve_rows

F64 = tf.float64
BOUND = 3.0


def spline_parameters(shape, bins, seed=0, spread=1.0):
    """Random positive widths/heights summing to 2 * BOUND and positive interior slopes."""
    rng = np.random.RandomState(seed)
    raw = rng.randn(*shape, 3 * bins - 1) * spread
    widths = tf.nn.softmax(raw[..., :bins]) * (2 * BOUND - bins * 1e-3) + 1e-3
    heights = tf.nn.softmax(raw[..., bins : 2 * bins]) * (2 * BOUND - bins * 1e-3) + 1e-3
    slopes = tf.nn.softplus(tf.constant(raw[..., 2 * bins :])) + 1e-3
    return tf.Variable(widths), tf.Variable(heights), tf.Variable(slopes)


def inputs(shape, seed=0):
    """Points inside and outside (|x| > BOUND) the spline's range."""
    return tf.constant(np.random.RandomState(seed + 100).uniform(-1.5, 1.5, size=shape) * BOUND)


def both(bijector_class, params, fn):
    """``fn(spline)`` and its gradient with respect to the parameters."""
    with tf.GradientTape() as tape:
        spline = bijector_class(*params, range_min=-BOUND)
        value = fn(spline)
        total = tf.reduce_sum(value)
    return value.numpy(), [g.numpy() for g in tape.gradient(total, params)]


@pytest.mark.parametrize("bins", [2, 8])
@pytest.mark.parametrize("spread", [0.1, 3.0], ids=["near-uniform", "uneven"])
@pytest.mark.parametrize(
    "what",
    ["forward", "inverse", "forward_log_det_jacobian", "inverse_log_det_jacobian"],
)
def test_spline_matches_tfp_values_log_dets_and_parameter_gradients(bins, spread, what):
    shape = (64, 5)
    params = spline_parameters(shape, bins, spread=spread)
    x = inputs(shape)
    assert np.sum(np.abs(x.numpy()) > BOUND) > 10  # some inputs take the identity tails

    def fn(spline):
        method = getattr(spline, what)
        return method(x, event_ndims=0) if "log_det" in what else method(x)

    ours, ours_grads = both(RationalQuadraticSpline, params, fn)
    theirs, their_grads = both(tfb.RationalQuadraticSpline, params, fn)
    # the bin's left knot is a masked sum here, a cumsum in TFP: rounding, amplified where a
    # bin is narrow and steep
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-10)
    for a, b in zip(ours_grads, their_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def test_spline_knots_map_to_knots_and_identity_outside():
    params = spline_parameters((3,), 4, spread=2.0)
    spline = RationalQuadraticSpline(*params, range_min=-BOUND)
    widths, heights = (p.numpy() for p in params[:2])
    knots_x = -BOUND + np.cumsum(widths, axis=-1)[..., :-1]
    knots_y = -BOUND + np.cumsum(heights, axis=-1)[..., :-1]
    for j in range(3):  # each interior knot, one per spline of the batch
        x = tf.constant(knots_x[:, j])
        np.testing.assert_allclose(spline.forward(x), knots_y[:, j], rtol=1e-12)
    outside = tf.constant([-BOUND - 0.5, BOUND + 2.0, -BOUND - 7.0], F64)
    np.testing.assert_array_equal(spline.forward(outside), outside.numpy())
    np.testing.assert_array_equal(spline.forward_log_det_jacobian(outside, event_ndims=0), 0.0)


def test_spline_round_trip_and_log_det_against_autodiff():
    """Fresh tensors each way (TFP's cache would hand back the input otherwise)."""
    params = spline_parameters((128,), 8, spread=2.0)
    spline = RationalQuadraticSpline(*params, range_min=-BOUND)
    x = inputs((128,), seed=1)
    y = spline.forward(x)
    np.testing.assert_allclose(spline.inverse(tf.identity(y)), x.numpy(), rtol=1e-10, atol=1e-10)
    fresh = tf.identity(x)
    with tf.GradientTape() as tape:
        tape.watch(fresh)
        out = spline.forward(fresh)
    slope = tape.gradient(out, fresh).numpy()  # elementwise map: dy_i/dx_i
    np.testing.assert_allclose(
        spline.forward_log_det_jacobian(tf.identity(x), event_ndims=0), np.log(slope), atol=1e-10
    )
    np.testing.assert_allclose(
        spline.inverse_log_det_jacobian(tf.identity(y), event_ndims=0), -np.log(slope), atol=1e-10
    )


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_spline_caches_its_log_det_with_either_direction(direction):
    """A log-det asked for after its direction is read from the cache, not recomputed."""
    params = [tf.constant(p.numpy()) for p in spline_parameters((8, 2), 4)]
    x = inputs((8, 2))

    def ops(*methods):
        def fn():
            spline = RationalQuadraticSpline(*params, range_min=-BOUND)
            return [getattr(spline, m)(x, **kw) for m, kw in methods]

        return len(tf.function(fn).get_concrete_function().graph.get_operations())

    value = (direction, {})
    log_det = (f"{direction}_log_det_jacobian", {"event_ndims": 1})
    alone = ops(log_det)
    assert ops(value, log_det) - ops(value) < alone / 4  # a cache read and a sum, no new lookup


@pytest.mark.parametrize("shape", [(256, 6), (3, 5, 6)], ids=["rows", "batch-of-batches"])
def test_scale_matvec_lu_inverse_matches_tfp_for_any_batch_shape(shape):
    rng = np.random.RandomState(0)
    lower_upper, perm = tf.linalg.lu(tf.constant(rng.randn(6, 6)))
    ours = ScaleMatvecLU(tf.Variable(lower_upper), perm)
    theirs = tfb.ScaleMatvecLU(ours.lower_upper, perm)
    y = tf.constant(rng.randn(*shape))
    with tf.GradientTape(persistent=True) as tape:
        a, b = ours.inverse(tf.identity(y)), theirs.inverse(tf.identity(y))
        losses = [tf.reduce_sum(v**2) for v in (a, b)]
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.forward(a), y.numpy(), atol=1e-10)
    grads = [tape.gradient(loss, ours.lower_upper) for loss in losses]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)


def test_affine_norm_inverse_is_the_operator_solve_for_any_batch_shape():
    an = AffineNorm(4, dtype=F64)
    an.initialize(tf.constant(np.random.RandomState(0).randn(100, 4) @ np.triu(np.ones((4, 4)))))
    y = tf.constant(np.random.RandomState(1).randn(2, 7, 4))
    operator = tf.linalg.LinearOperatorLowerTriangular(tf.convert_to_tensor(an.scale_tril))
    expected = operator.solvevec(y - an.shift)
    np.testing.assert_allclose(an.inverse(tf.identity(y)), expected, rtol=1e-12, atol=1e-12)


def test_solve_rows_keeps_each_row_apart():
    scale = tf.constant([[2.0, 0.0], [1.0, 4.0]], F64)
    y = tf.constant([[[2.0, 9.0]], [[4.0, 2.0]]], F64)
    x = solve_rows(lambda rhs: tf.linalg.triangular_solve(scale, rhs), y)
    np.testing.assert_allclose(x, [[[1.0, 2.0]], [[2.0, 0.0]]])
