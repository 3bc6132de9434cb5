"""One conditioner pass per density evaluation: same values as TFP's stock bijectors, half the work.

Behavioural checks only (op counts in traced graphs, values, caching), never wall-clock times.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_probability import bijectors as tfb  # noqa: E402

from flows_tf.bijectors.onepass import _INVERT, OnePassMAF, OnePassRealNVP, stock_twin  # noqa: E402
from flows_tf.flows import build_flow, initialize  # noqa: E402

F64 = tf.float64
SMALL = {"num_layers": 3, "hidden_units": [8, 8]}
ONE_PASS = {  # flow -> hyperparameters; every one of these flows is built from one-pass layers
    "maf": SMALL,
    "iaf": SMALL,
    "nice": SMALL,
    "realnvp": SMALL,
    "glow": {"num_layers": 2, "hidden_units": [8, 8]},
    "nsf": {"num_layers": 2, "hidden_units": [8, 8], "num_bins": 4},
}


def data(d, n=16, seed=0):
    return tf.constant(np.random.RandomState(seed).randn(n, d), F64)


def make(name, d, dtype=F64):
    tf.random.set_seed(0)
    flow = build_flow(name, [d], dtype, **ONE_PASS[name])
    initialize(flow, tf.cast(data(d, 64, seed=9), dtype))
    return flow


def perturb(flow, seed=0):
    """Non-zero weights everywhere (coupling nets start at zero: the identity would hide bugs)."""
    rng = np.random.RandomState(seed)
    for v in flow.trainable_variables:
        v.assign(v + 0.1 * rng.randn(*v.shape))
    for layer in flow.submodules:  # re-apply MADE's masks, as a constraint-honouring optimizer
        if getattr(layer, "kernel_constraint", None) is not None:
            layer.kernel.assign(layer.kernel_constraint(layer.kernel))
    assert any(getattr(m, "kernel_constraint", None) for m in flow.submodules) == (
        "maf" in flow.name or "iaf" in flow.name
    )


def count_ops(fn, *args, op_type="MatMul"):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return sum(op.type == op_type for op in graph.get_operations())


def leaves(bijector):
    if isinstance(bijector, tfb.Composition):
        for b in bijector.bijectors:
            yield from leaves(b)
    elif isinstance(bijector, _INVERT):
        yield from leaves(bijector.bijector)
    else:
        yield bijector


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_flow_is_built_from_one_pass_layers_and_its_stock_twin_from_tfp(name):
    flow = make(name, 4)
    ours = [b for b in leaves(flow.bijector) if isinstance(b, OnePassMAF | OnePassRealNVP)]
    assert len(ours) == ONE_PASS[name]["num_layers"]
    stock = list(leaves(stock_twin(flow).bijector))
    assert not any(isinstance(b, OnePassMAF | OnePassRealNVP) for b in stock)
    assert {id(v) for v in stock_twin(flow).trainable_variables} == {
        id(v) for v in flow.trainable_variables
    }


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_log_prob_and_gradients_identical_to_stock(name):
    d = 4
    flow = make(name, d)
    perturb(flow)
    stock = stock_twin(flow)
    x = data(d)
    with tf.GradientTape(persistent=True) as tape:
        lp_ours, lp_stock = flow.log_prob(x), stock.log_prob(x)
    np.testing.assert_array_equal(lp_ours.numpy(), lp_stock.numpy())
    g_ours = tape.gradient(lp_ours, flow.trainable_variables)
    g_stock = tape.gradient(lp_stock, flow.trainable_variables)
    for a, b in zip(g_ours, g_stock, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["maf", "realnvp", "nsf"])
def test_traced_log_prob_runs_each_network_once(name):
    d = 4
    flow = make(name, d, tf.float32)
    x = tf.zeros([8, d])
    ours, stock = count_ops(flow.log_prob, x), count_ops(stock_twin(flow).log_prob, x)
    layers = ONE_PASS[name]["num_layers"]
    hidden = len(ONE_PASS[name]["hidden_units"])
    assert ours == layers * (hidden + 1)  # one pass per layer: hidden layers + output layer
    assert stock == 2 * ours


def test_iaf_sample_and_log_det_share_one_pass():
    """IAF sampling caches the log-det: forward + fldj costs what forward alone costs."""
    d = 4
    flow = make("iaf", d, tf.float32)
    z = tf.zeros([8, d])

    def forward_and_fldj(z):
        return flow.bijector.forward(z), flow.bijector.forward_log_det_jacobian(z, event_ndims=1)

    def stock_forward_and_fldj(z):
        b = stock_twin(flow).bijector
        return b.forward(z), b.forward_log_det_jacobian(z, event_ndims=1)

    alone = count_ops(flow.bijector.forward, z)
    assert count_ops(forward_and_fldj, z) == alone
    assert count_ops(stock_forward_and_fldj, z) == 2 * alone


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_log_det_without_prior_inverse_and_per_tensor_cache(name):
    """ildj asked first, or for a fresh tensor, is computed, never read from a stale entry."""
    d = 4
    flow = make(name, d)
    perturb(flow)
    bij, stock = flow.bijector, stock_twin(flow).bijector
    x1, x2 = data(d, seed=1), data(d, seed=2)
    expected1 = stock.inverse_log_det_jacobian(tf.identity(x1), event_ndims=1).numpy()
    expected2 = stock.inverse_log_det_jacobian(tf.identity(x2), event_ndims=1).numpy()
    # log-det first (no cached inverse), then the inverse of the same tensor
    first = bij.inverse_log_det_jacobian(x1, event_ndims=1).numpy()
    np.testing.assert_allclose(first, expected1, rtol=1e-12)
    z1 = bij.inverse(x1)
    np.testing.assert_allclose(z1.numpy(), stock.inverse(tf.identity(x1)).numpy(), rtol=1e-12)
    # a cached inverse of x1 must not answer for x2, nor for an equal-valued copy of x1
    bij.inverse(x2 + 1.0)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(tf.identity(x2), event_ndims=1).numpy(), expected2, rtol=1e-12
    )
    copy = tf.identity(x1)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(copy, event_ndims=1).numpy(), expected1, rtol=1e-12
    )
    if name != "nice":  # NICE's log-det is constant; elsewhere the two inputs must differ
        assert not np.allclose(expected1, expected2)


@pytest.mark.parametrize("name", ["realnvp", "nsf", "iaf"])
def test_sample_then_log_prob_of_the_sample_matches_a_fresh_evaluation(name):
    """The forward direction's cached log-det equals the density recomputed from scratch."""
    d = 4
    flow = make(name, d)
    perturb(flow)
    z = data(d, seed=5)
    x = flow.bijector.forward(z)
    cached = flow.distribution.log_prob(z) - flow.bijector.forward_log_det_jacobian(
        z, event_ndims=1
    )
    fresh = flow.log_prob(tf.identity(x))
    np.testing.assert_allclose(cached.numpy(), fresh.numpy(), rtol=1e-9, atol=1e-9)


def test_one_pass_maf_inverse_round_trips_through_the_sequential_forward():
    d = 5
    flow = make("maf", d)
    perturb(flow)
    layer = next(b for b in leaves(flow.bijector) if isinstance(b, OnePassMAF))
    x = data(d, seed=3)
    z = layer.inverse(tf.identity(x))
    np.testing.assert_allclose(layer.forward(tf.identity(z)).numpy(), x.numpy(), atol=1e-10)
