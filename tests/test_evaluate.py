"""Evaluation metrics against closed forms: Gaussian flows whose densities are known exactly."""

import gc
import math
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from flows_tf import evaluate, train
from flows_tf.flows import build_flow

tfb, tfd = tfp.bijectors, tfp.distributions
LOC, SCALE = np.array([1.0, -0.5]), np.array([0.5, 2.0])


def _gaussian_flow(loc=LOC, scale=SCALE, dtype=tf.float64):
    """x = loc + scale * z: an exactly known diagonal Gaussian with 4 trainable scalars."""
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, dtype), tf.constant(1.0, dtype)), [len(loc)])
    shift = tfb.Shift(tf.Variable(tf.constant(loc, dtype)))
    scale = tfb.Scale(tf.Variable(tf.constant(scale, dtype)))
    return tfd.TransformedDistribution(base, tfb.Chain([shift, scale]))


def _normal_log_prob(x, loc, scale):
    return np.sum(-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), 1)


def test_loglik_mean_se_and_batching():
    flow = _gaussian_flow()
    x = np.random.default_rng(0).standard_normal((1001, 2)) * 1.3
    exact = _normal_log_prob(x, LOC, SCALE)
    small, large = evaluate.loglik(flow, x, batch_size=64), evaluate.loglik(flow, x)
    np.testing.assert_allclose(small["per_example"], exact, rtol=1e-10)
    np.testing.assert_allclose(large["per_example"], exact, rtol=1e-10)
    assert small["test_loglik"] == pytest.approx(exact.mean())
    assert small["test_loglik_se"] == pytest.approx(exact.std(ddof=1) / math.sqrt(1001))
    assert small["n_test"] == 1001


def test_loglik_refuses_non_finite_values():
    base = tfd.Sample(tfd.Normal(0.0, 1.0), [2])
    flow = tfd.TransformedDistribution(base, tfb.Exp())  # support x > 0
    x = np.array([[1.0, 2.0], [-1.0, 1.0], [0.5, 0.5]], np.float32)
    with pytest.raises(ValueError, match="non-finite for 1 of 3"):
        evaluate.loglik(flow, x)


class _GaussianTarget:
    """Unnormalised N(0, I) in 2-D: log p~ = -|x|^2 / 2, Z = 2 pi."""

    log_z = math.log(2 * math.pi)

    def __call__(self, x):
        return -0.5 * tf.reduce_sum(x**2, axis=-1)


def test_vi_metrics_exact_and_mismatched():
    exact = evaluate.vi_metrics(_gaussian_flow([0.0, 0.0], [1.0, 1.0]), _GaussianTarget(), n=2000)
    assert exact["elbo"] == pytest.approx(math.log(2 * math.pi), abs=1e-9)
    assert exact["kl_to_target"] == pytest.approx(0.0, abs=1e-9)
    assert exact["ess"] == pytest.approx(1.0)

    loc, scale = np.array([0.3, 0.0]), np.array([0.9, 1.2])
    wide = evaluate.vi_metrics(_gaussian_flow(loc, scale), _GaussianTarget(), n=40000)
    kl = np.sum(-np.log(scale) + (scale**2 + loc**2) / 2 - 0.5)  # KL(N(loc, scale) || N(0, 1))
    assert wide["kl_to_target"] == pytest.approx(kl, abs=0.02)
    # ESS / n -> 1 / E_q[(p/q)^2], per dimension s / sqrt(2 a) exp(b^2 / 4a + m^2 / 2 s^2)
    a, b = 1 - 1 / (2 * scale**2), loc / scale**2
    moment = scale / np.sqrt(2 * a) * np.exp(b**2 / (4 * a) + loc**2 / (2 * scale**2))
    assert wide["ess"] == pytest.approx(1 / np.prod(moment), rel=0.05)
    assert wide["log_z_estimate"] == pytest.approx(math.log(2 * math.pi), abs=0.05)
    # Monte Carlo error of the KL: std(log w) / sqrt(n); the exact fit has none
    assert exact["kl_to_target_se"] == pytest.approx(0.0, abs=1e-9)
    d = np.log(scale)  # log w = log N(x; 0, 1) - log N(x; loc, scale) + log Z, x = loc + scale z
    x = np.random.default_rng(1).standard_normal((40000, 2)) * scale + loc
    log_w = np.sum(-0.5 * x**2 + 0.5 * ((x - loc) / scale) ** 2 + d, axis=1)
    assert wide["kl_to_target_se"] == pytest.approx(log_w.std() / math.sqrt(40000), rel=0.05)
    assert wide["elbo_se"] == wide["kl_to_target_se"]


def test_student_metrics_of_a_flow_against_itself(small_hparams):
    train.set_seeds(0)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    metrics = evaluate.student_metrics(teacher, teacher, n=500)
    assert metrics["kl_to_teacher"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["forward_kl_to_teacher"] == pytest.approx(0.0, abs=1e-9)
    assert "sampling_speedup" not in metrics  # a timing: the serial time_models step's


def _sleeper(calls, name, seconds):
    def call():
        calls.append(name)
        time.sleep(seconds)
        return np.zeros(1)

    return call


def test_interleaved_times_warm_up_then_a_cache_call_and_a_timed_call_each_per_round():
    calls = []
    fns = [_sleeper(calls, "a", 0.0), _sleeper(calls, "b", 0.02)]
    times = evaluate.interleaved_times(fns, repeats=3, burst_seconds=0.0, warmup_seconds=0.0)
    # trace and one warm-up call each, then round-robin: one untimed call, one timed call
    assert calls == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] * 3
    assert times.shape == (2, 3) and np.all(times[1] >= 0.02) and np.all(times[0] < 0.02)


def test_interleaved_times_prepares_each_function_untimed_before_its_warm_up_and_rounds():
    calls = []
    fns = [_sleeper(calls, "a", 0.0), _sleeper(calls, "b", 0.0)]
    prepare = [_sleeper(calls, "load a", 0.0), _sleeper(calls, "load b", 0.05)]
    times = evaluate.interleaved_times(
        fns, repeats=2, burst_seconds=0.0, warmup_seconds=0.0, prepare=prepare
    )
    assert calls == ["load a", "a", "a", "load b", "b", "b"] + [
        "load a", "a", "a", "load b", "b", "b"
    ] * 2  # fmt: skip
    assert np.all(times < 0.05)  # the 50 ms of loading b are outside the clock


def test_interleaved_times_warms_a_function_listed_twice_up_once():
    calls = []
    shared = _sleeper(calls, "shared", 0.0)
    prepare = [_sleeper(calls, "load 1", 0.0), _sleeper(calls, "load 2", 0.0)]
    evaluate.interleaved_times(
        [shared, shared], repeats=1, burst_seconds=0.0, warmup_seconds=0.0, prepare=prepare
    )
    assert calls == ["load 1", "shared", "shared"] + ["load 1", "shared", "shared"] + [
        "load 2", "shared", "shared"
    ]  # fmt: skip


def test_interleaved_times_times_short_calls_in_bursts_and_reports_seconds_per_call():
    calls = []
    fns = [_sleeper(calls, "short", 0.001), _sleeper(calls, "long", 0.06)]
    times = evaluate.interleaved_times(fns, repeats=2, burst_seconds=0.05, warmup_seconds=0.02)
    short, long = calls.count("short"), calls.count("long")
    warm_short = calls.index("long")  # the short function warms up first, for about 20 ms
    assert 2 <= warm_short <= 1 + 20
    assert long == 2 + 2 * 2  # warm-up longer than 20 ms: trace + one call; one per round
    assert warm_short + 2 * (1 + 3) <= short <= warm_short + 2 * (1 + 50)  # bursts of 3-50
    assert np.all(times[0] >= 0.001) and np.all(times[0] < 0.01)  # per call, not per burst
    assert np.all(times[1] >= 0.06)
    assert gc.isenabled()  # switched off while timing, back on afterwards


def test_compiled_sampler_is_repeatable_and_n_params():
    flow = _gaussian_flow(dtype=tf.float32)
    sample = evaluate.compiled_sampler(flow, 7)
    np.testing.assert_array_equal(sample().numpy(), sample().numpy())  # fixed seed
    assert sample().shape == (7, 2)
    assert evaluate.n_params(flow) == 4
    train.set_seeds(0)
    maf = build_flow("maf", [3], num_layers=1, hidden_units=[5], data_affine="none")
    # one MADE: 3 -> 5 -> 2 * 3 (kernels and biases; masked entries included)
    assert evaluate.n_params(maf) == 3 * 5 + 5 + 5 * 6 + 6


@pytest.mark.parametrize("name", ["planar", "glow", "nsf"])
def test_validation_log_prob_under_xla_matches_graph_mode(make_flow, tol, name):
    flow = make_flow(name, 3, perturb=0.1)
    x = tf.random.stateless_normal([50, 3], seed=[0, 1], dtype=flow.dtype)
    graph = evaluate.compiled_log_prob(flow)
    xla = evaluate.compiled_log_prob(flow, jit_compile=True)
    for rows in (x, x[:7]):  # XLA compiles once per batch size
        want = graph(rows).numpy()
        assert np.all(np.isfinite(want))
        np.testing.assert_allclose(
            xla(rows).numpy(), want, rtol=tol(1e-10, 1e-4), atol=tol(1e-10, 1e-4)
        )
    assert xla.experimental_get_tracing_count() == 1  # one trace for any batch size


def test_density_grid_orientation_and_mass():
    flow = _gaussian_flow([1.5, -1.0], [0.5, 0.7])
    xs, ys, logp = evaluate.density_grid(flow, bounds=(-4, 4), n=161)
    assert xs.shape == ys.shape == (161,) and logp.shape == (161, 161)
    i, j = np.unravel_index(np.argmax(logp), logp.shape)
    assert xs[j] == pytest.approx(1.5) and ys[i] == pytest.approx(-1.0)  # logp[i, j] at (x_j, y_i)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert np.exp(logp).sum() * cell == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="2-D"):
        evaluate.density_grid(_gaussian_flow([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))


@pytest.mark.parametrize("name", ["planar", "maf", "glow"])
def test_reused_traces_give_each_model_its_own_numbers(make_flow, name):
    from flows_tf.datasets import energy_target

    models = [make_flow(name, perturb=0.1, seed=s) for s in (0, 1)]
    spec = {"builder": name, "event_shape": [2]}
    target = energy_target("u1")

    def measure(flow):
        grid = evaluate.density_grid(flow, n=12)[2]
        return grid, evaluate.vi_metrics(flow, target, n=300, seed=4)

    alone = [measure(flow) for flow in models]
    with evaluate.reuse_traces():
        hosted = [measure(evaluate.host(flow, spec)) for flow in (*models, models[0])]
        assert evaluate.host(models[1], spec) is models[0]  # the first model of the spec hosts
        log_prob = evaluate.compiled_log_prob(models[0])
        assert evaluate.compiled_log_prob(models[0]) is log_prob  # traced once
    assert evaluate.compiled_log_prob(models[0]) is not log_prob  # afresh outside the block
    assert not np.array_equal(alone[0][0], alone[1][0])  # two different models ...
    for (grid, vi), (own_grid, own_vi) in zip(hosted, [*alone, alone[0]], strict=True):
        assert np.array_equal(grid, own_grid) and vi == own_vi  # ... each with its own numbers
