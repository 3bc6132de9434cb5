"""Planar, radial, actnorm and affine-norm bijectors: constraints, inverses, log-dets, gradients."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flows_tf.bijectors import ActNorm, AffineNorm, Planar, Radial, planar_u_hat

F64 = tf.float64
LOG_E_MINUS_1 = np.log(np.expm1(1.0))
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def vec(n=3):
    return arrays(np.float64, n, elements=finite)


@settings(max_examples=200, deadline=None)
@given(w=vec(), u=vec())
def test_planar_u_hat_keeps_w_dot_u_hat_above_minus_one(w, u):
    wu_hat = float(tf.reduce_sum(tf.constant(w) * planar_u_hat(tf.constant(w), tf.constant(u))))
    wu = float(np.dot(w, u))
    # Exact value m(w.u) = -1 + softplus(w.u + log(e - 1)) > -1; allow float64 rounding of |w.u|.
    assert wu_hat >= -1.0 - 1e-13 * (1.0 + abs(wu))
    if np.dot(w, w) > 0:
        expected = -1.0 + np.logaddexp(0.0, wu + LOG_E_MINUS_1)
        assert wu_hat == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(w=vec().filter(lambda w: np.dot(w, w) > 1e-12))
def test_planar_with_zero_u_is_the_identity(w):
    """m(0) = 0: u = 0 gives u_hat = 0 for every w (the unshifted m gave -0.31 w / ||w||^2)."""
    w = tf.constant(w)
    np.testing.assert_array_equal(planar_u_hat(w, tf.zeros_like(w)), np.zeros(3))
    bij = Planar(w, tf.zeros_like(w), tf.constant(0.3, F64))
    x = tf.constant(np.random.RandomState(0).randn(8, 3) * 3.0)
    np.testing.assert_array_equal(bij.forward(x), x)
    np.testing.assert_array_equal(bij.forward_log_det_jacobian(x, event_ndims=1), np.zeros(8))


@settings(max_examples=25, deadline=None)
@given(w=vec(2), u=vec(2), b=finite)
def test_planar_inverse_is_exact_for_any_raw_parameters(w, u, b):
    bij = Planar(tf.constant(w), tf.constant(u), tf.constant(b, F64))
    x = tf.constant(np.random.RandomState(0).randn(8, 2) * 3.0)
    y = bij.forward(x)
    scale = 1.0 + np.abs(y.numpy()).max()
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, rtol=0, atol=1e-10 * scale)


def planar(d=3, seed=0, near_singular=False):
    rng = np.random.RandomState(seed)
    w = rng.randn(d)
    u = rng.randn(d)
    if near_singular:  # w.u_hat close to -1: the scalar equation is nearly flat at a = -b
        u = -30.0 * w / np.dot(w, w)
    return Planar(tf.Variable(w), tf.Variable(u), tf.Variable(rng.randn(), dtype=F64))


@pytest.mark.parametrize("near_singular", [False, True])
def test_planar_round_trip_and_log_det(near_singular):
    bij = planar(near_singular=near_singular)
    x = tf.constant(np.random.RandomState(1).randn(16, 3) * 4.0)
    y = bij.forward(x)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, rtol=0, atol=1e-10)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bij.forward(tf.identity(x))  # bypass the bijector cache so the tape sees the ops
    _, logdet = tf.linalg.slogdet(tape.batch_jacobian(y, x))
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=1), logdet, atol=1e-10)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1), -logdet, atol=1e-9
    )


def test_planar_inverse_gradients_match_finite_differences():
    """Gradients of the numerical inverse w.r.t. the parameters (implicit Newton step)."""
    bij = planar(d=2, seed=3)
    y = tf.constant(np.random.RandomState(2).randn(5, 2) * 2.0)

    def loss():
        return tf.reduce_sum(bij.inverse(tf.identity(y)) ** 2) + tf.reduce_sum(
            bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
        )

    params = [bij.w, bij.u, bij.b]
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, params)
    eps = 1e-6
    for p, g in zip(params, grads, strict=True):
        flat = p.numpy().reshape(-1)
        g = np.reshape(g, -1)
        for i in range(flat.size):
            step = np.zeros_like(flat)
            step[i] = eps
            p.assign((flat + step).reshape(p.shape))
            up = loss().numpy()
            p.assign((flat - step).reshape(p.shape))
            down = loss().numpy()
            p.assign(flat.reshape(p.shape))
            assert g[i] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-7)


def test_bijectors_follow_the_tfp_contract():
    bij = planar()
    assert set(bij.parameters) >= {"w", "u", "b", "validate_args", "name"}
    assert bij.forward_min_event_ndims == 1
    assert len(bij.trainable_variables) == 3
    x = tf.zeros([4, 6, 3], F64)
    assert bij.forward_log_det_jacobian(x, event_ndims=1).shape == (4, 6)
    assert bij.forward_log_det_jacobian(x, event_ndims=2).shape == (4,)
    rad = Radial(
        tf.Variable(tf.zeros([3], F64)), tf.Variable(0.0, dtype=F64), tf.Variable(1.0, dtype=F64)
    )
    assert set(rad.parameters) >= {"z0", "alpha_raw", "beta_raw"}
    assert rad.inverse_log_det_jacobian(x + 1.0, event_ndims=1).shape == (4, 6)
    assert len(rad.trainable_variables) == 3


@settings(max_examples=100, deadline=None)
@given(alpha_raw=st.floats(-30, 30), beta_raw=st.floats(-30, 30))
def test_radial_beta_is_at_least_minus_alpha(alpha_raw, beta_raw):
    alpha, beta = Radial(
        tf.zeros([2], F64), tf.constant(alpha_raw, F64), tf.constant(beta_raw, F64)
    ).alpha_beta()
    assert float(alpha) > 0 and float(beta) >= -float(alpha)


@pytest.mark.parametrize("beta_raw", [-4.0, 0.0, 3.0], ids=["contract", "near-identity", "expand"])
@pytest.mark.parametrize("spread", [1e-3, 1.0, 1e3])
def test_radial_closed_form_inverse_and_log_det(beta_raw, spread):
    rng = np.random.RandomState(0)
    z0 = tf.constant(rng.randn(4))
    bij = Radial(z0, tf.constant(-0.5, F64), tf.constant(beta_raw, F64))
    x = z0 + tf.constant(rng.randn(16, 4) * spread)
    y = bij.forward(x)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, rtol=1e-12, atol=1e-12 * spread)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bij.forward(tf.identity(x))  # bypass the bijector cache so the tape sees the ops
    _, logdet = tf.linalg.slogdet(tape.batch_jacobian(y, x))
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=1), logdet, atol=1e-9)


def test_actnorm_initialises_once_and_checkpoints_the_flag(tmp_path):
    an = ActNorm(3, dtype=F64)
    x = tf.constant(np.random.RandomState(0).randn(1000, 3) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0])
    assert an.initialize(x)
    h = an.inverse(x).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(h.std(0), 1.0, atol=1e-4)  # variance floor 1e-6
    assert not an.initialize(x * 2.0)  # second call is a no-op
    assert an.initialize(x * 2.0, force=True)
    path = tf.train.Checkpoint(an=an).save(str(tmp_path / "an"))
    other = ActNorm(3, dtype=F64)
    tf.train.Checkpoint(an=other).restore(path)
    assert not other.initialize(x)
    np.testing.assert_array_equal(other.log_scale.numpy(), an.log_scale.numpy())
    assert an.trainable_variables and len(an.trainable_variables) == 2


def correlated(n=2000, d=3, seed=0):
    rng = np.random.RandomState(seed)
    return tf.constant(rng.randn(n, d) @ rng.randn(d, d) + rng.randn(d) * 5.0)


def test_affine_norm_is_the_identity_until_initialised_then_whitens_the_data():
    an = AffineNorm(3, dtype=F64)
    x = correlated()
    np.testing.assert_array_equal(an.inverse(x), x)
    assert an.initialize(x)
    h = an.inverse(tf.identity(x)).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.cov(h, rowvar=False, bias=True), np.eye(3), atol=1e-4)  # jitter
    # with a standard-normal base, the layer alone is the maximum-likelihood Gaussian fit
    xn = x.numpy()
    cov = np.cov(xn, rowvar=False, bias=True) + 1e-6 * np.eye(3)  # the documented jitter
    diff = xn - xn.mean(0)
    fit = -0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff))
    fit -= 0.5 * (3 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])
    base = -0.5 * np.sum(h**2, axis=1) - 1.5 * np.log(2 * np.pi)
    ildj = an.inverse_log_det_jacobian(tf.identity(x), event_ndims=1).numpy()
    np.testing.assert_allclose(base + ildj, fit, atol=1e-5)


def test_affine_norm_round_trip_log_det_and_checkpointed_flag(tmp_path):
    an = AffineNorm(3, dtype=F64)
    assert an.initialize(correlated())
    assert not an.initialize(correlated(seed=1))  # second call is a no-op
    z = tf.constant(np.random.RandomState(2).randn(16, 3))
    x = an.forward(z)
    np.testing.assert_allclose(an.inverse(tf.identity(x)), z, atol=1e-10)
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = an.forward(tf.identity(z))
    _, logdet = tf.linalg.slogdet(tape.batch_jacobian(y, z))
    np.testing.assert_allclose(an.forward_log_det_jacobian(z, event_ndims=1), logdet, atol=1e-10)
    path = tf.train.Checkpoint(an=an).save(str(tmp_path / "an"))
    other = AffineNorm(3, dtype=F64)
    tf.train.Checkpoint(an=other).restore(path)
    assert not other.initialize(correlated(seed=3))
    np.testing.assert_array_equal(other.inverse(tf.identity(x)), an.inverse(tf.identity(x)))
    assert len(an.trainable_variables) == 2  # shift and the Cholesky factor's free entries
    assert sum(int(np.prod(v.shape)) for v in an.trainable_variables) == 3 + 6


def test_affine_norm_refuses_too_few_rows_for_a_full_covariance():
    with pytest.raises(ValueError, match="N=3 rows for D=3"):
        AffineNorm(3, dtype=F64).initialize(correlated(n=3))
