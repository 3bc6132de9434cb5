"""One conditioner pass per density evaluation: same values as TFP's stock bijectors, half the work.

Behavioural checks only (op counts in traced graphs, values, caching), never wall-clock times.
"""

import numpy as np
import pytest
import tensorflow as tf

from flows_tf.bijectors.onepass import OnePassMAF, OnePassRealNVP, stock_twin

ONE_PASS = ["glow", "iaf", "maf", "nice", "nsf", "realnvp"]  # flows built from one-pass layers
PERTURB = 0.1  # coupling nets start at zero: the identity would hide bugs
# ours computes these with other ops than TFP (spline bins by comparison, one batched solve):
# the same values up to rounding, not bit for bit
OTHER_OPS = {"glow", "nsf"}


def data(d, dtype, n=16, seed=0):
    return tf.constant(np.random.RandomState(seed).randn(n, d), dtype)


def count_ops(fn, *args, op_type="MatMul"):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return sum(op.type == op_type for op in graph.get_operations())


def leaves(walk, bijector):
    return [b for b, _ in walk(bijector)]


@pytest.mark.parametrize("name", ONE_PASS)
def test_flow_is_built_from_one_pass_layers_and_its_stock_twin_from_tfp(
    name, make_flow, walk, small_hparams
):
    flow = make_flow(name, 4)
    ours = [b for b in leaves(walk, flow.bijector) if isinstance(b, OnePassMAF | OnePassRealNVP)]
    assert len(ours) == small_hparams[name]["num_layers"]
    stock = leaves(walk, stock_twin(flow).bijector)
    assert not any(isinstance(b, OnePassMAF | OnePassRealNVP) for b in stock)
    assert {id(v) for v in stock_twin(flow).trainable_variables} == {
        id(v) for v in flow.trainable_variables
    }


@pytest.mark.parametrize("name", ONE_PASS)
def test_log_prob_and_gradients_identical_to_stock(name, make_flow, dtype, tol):
    d = 4
    flow = make_flow(name, d, perturb=PERTURB)
    stock = stock_twin(flow)
    x = data(d, dtype)
    with tf.GradientTape(persistent=True) as tape:
        lp_ours, lp_stock = flow.log_prob(x), stock.log_prob(x)
    if name in OTHER_OPS:
        np.testing.assert_allclose(lp_ours.numpy(), lp_stock.numpy(), rtol=tol(1e-13, 1e-6))
    else:
        np.testing.assert_array_equal(lp_ours.numpy(), lp_stock.numpy())
    g_ours = tape.gradient(lp_ours, flow.trainable_variables)
    g_stock = tape.gradient(lp_stock, flow.trainable_variables)
    for a, b in zip(g_ours, g_stock, strict=True):
        np.testing.assert_allclose(
            a.numpy(), b.numpy(), rtol=tol(1e-12, 1e-5), atol=tol(1e-14, 1e-6)
        )


@pytest.mark.parametrize("name", ["maf", "realnvp", "nsf"])
def test_traced_log_prob_runs_each_network_once(name, make_flow, small_hparams):
    d = 4
    flow = make_flow(name, d, dtype=tf.float32)
    x = tf.zeros([8, d])
    ours, stock = count_ops(flow.log_prob, x), count_ops(stock_twin(flow).log_prob, x)
    layers = small_hparams[name]["num_layers"]
    hidden = len(small_hparams[name]["hidden_units"])
    assert ours == layers * (hidden + 1)  # one pass per layer: hidden layers + output layer
    assert stock == 2 * ours


def test_iaf_sample_and_log_det_share_one_pass(make_flow):
    """IAF sampling caches the log-det: forward + fldj costs what forward alone costs."""
    d = 4
    flow = make_flow("iaf", d, dtype=tf.float32)
    z = tf.zeros([8, d])

    def forward_and_fldj(z):
        return flow.bijector.forward(z), flow.bijector.forward_log_det_jacobian(z, event_ndims=1)

    def stock_forward_and_fldj(z):
        b = stock_twin(flow).bijector
        return b.forward(z), b.forward_log_det_jacobian(z, event_ndims=1)

    alone = count_ops(flow.bijector.forward, z)
    assert count_ops(forward_and_fldj, z) == alone
    assert count_ops(stock_forward_and_fldj, z) == 2 * alone


@pytest.mark.parametrize("name", ONE_PASS)
def test_log_det_without_prior_inverse_and_per_tensor_cache(name, make_flow, dtype, tol):
    """ildj asked first, or for a fresh tensor, is computed, never read from a stale entry."""
    d = 4
    flow = make_flow(name, d, perturb=PERTURB)
    bij, stock = flow.bijector, stock_twin(flow).bijector
    rtol = tol(1e-12, 1e-5)
    x1, x2 = data(d, dtype, seed=1), data(d, dtype, seed=2)
    expected1 = stock.inverse_log_det_jacobian(tf.identity(x1), event_ndims=1).numpy()
    expected2 = stock.inverse_log_det_jacobian(tf.identity(x2), event_ndims=1).numpy()
    # log-det first (no cached inverse), then the inverse of the same tensor
    first = bij.inverse_log_det_jacobian(x1, event_ndims=1).numpy()
    np.testing.assert_allclose(first, expected1, rtol=rtol)
    z1 = bij.inverse(x1)
    np.testing.assert_allclose(z1.numpy(), stock.inverse(tf.identity(x1)).numpy(), rtol=rtol)
    # a cached inverse of x1 must not answer for x2, nor for an equal-valued copy of x1
    bij.inverse(x2 + 1.0)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(tf.identity(x2), event_ndims=1).numpy(), expected2, rtol=rtol
    )
    copy = tf.identity(x1)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(copy, event_ndims=1).numpy(), expected1, rtol=rtol
    )
    if name != "nice":  # NICE's log-det is constant; elsewhere the two inputs must differ
        assert not np.allclose(expected1, expected2)


@pytest.mark.parametrize("name", ["realnvp", "nsf", "iaf"])
def test_sample_then_log_prob_of_the_sample_matches_a_fresh_evaluation(name, make_flow, dtype, tol):
    """The forward direction's cached log-det equals the density recomputed from scratch."""
    d = 4
    flow = make_flow(name, d, perturb=PERTURB)
    z = data(d, dtype, seed=5)
    x = flow.bijector.forward(z)
    cached = flow.distribution.log_prob(z) - flow.bijector.forward_log_det_jacobian(
        z, event_ndims=1
    )
    fresh = flow.log_prob(tf.identity(x))
    atol = tol(1e-9, 1e-4)
    np.testing.assert_allclose(cached.numpy(), fresh.numpy(), rtol=atol, atol=atol)


def test_one_pass_maf_inverse_round_trips_through_the_sequential_forward(
    make_flow, walk, dtype, tol
):
    d = 5
    flow = make_flow("maf", d, perturb=PERTURB)
    layer = next(b for b in leaves(walk, flow.bijector) if isinstance(b, OnePassMAF))
    x = data(d, dtype, seed=3)
    z = layer.inverse(tf.identity(x))
    x_again = layer.forward(tf.identity(z)).numpy()
    np.testing.assert_allclose(x_again, x.numpy(), atol=tol(1e-10, 1e-4))
