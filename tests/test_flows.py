"""Every flow in the registry: exact log-densities, inverses, sampling and training plumbing."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml
from tensorflow_probability import bijectors as tfb

from flows_tf import experiment
from flows_tf.flows import FLOWS, build_flow, initialize

F64 = tf.float64
GLOW_IMAGE = {"num_layers": 2, "hidden_units": [4], "image_shape": [8, 8, 1]}
PERTURB = 0.3  # every variable moved off the identity start, so bugs cannot hide there


def test_small_hparams_cover_every_registered_flow(small_hparams):
    assert set(small_hparams) == set(FLOWS)


def data(d, n=4, seed=1, dtype=F64):
    return tf.constant(np.random.RandomState(seed).randn(n, d) * 1.5, dtype)


def autodiff_log_prob(flow, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = flow.bijector.inverse(tf.identity(x))
    jac = tape.batch_jacobian(z, x)
    _, logabsdet = tf.linalg.slogdet(jac)
    return flow.distribution.log_prob(z) + logabsdet


NOISE_SHIFT = {"shift_side": "noise"}
BY_DEGREE = {"sequential": "by_degree"}
CASES = [(name, d, {}) for name in FLOWS for d in (2, 5)] + [
    ("glow", 64, GLOW_IMAGE),
    ("maf", 5, NOISE_SHIFT),
    ("iaf", 5, NOISE_SHIFT),
    ("maf", 5, BY_DEGREE),
    ("iaf", 5, BY_DEGREE),
    ("iaf", 5, {**NOISE_SHIFT, **BY_DEGREE}),
]
IDS = [
    f"{n}-D{d}" + ("-image" if h is GLOW_IMAGE else "".join(f"-{v}" for v in h.values()))
    for n, d, h in CASES
]


@pytest.mark.parametrize("name,d,hparams", CASES, ids=IDS)
def test_log_prob_matches_autodiff_jacobian(name, d, hparams, make_flow, dtype, tol):
    flow = make_flow(name, d, perturb=PERTURB, **hparams)
    x = data(d, dtype=dtype)
    np.testing.assert_allclose(
        flow.log_prob(x), autodiff_log_prob(flow, x), rtol=tol(0, 1e-5), atol=tol(1e-8, 1e-3)
    )


@pytest.mark.parametrize("name,d,hparams", CASES, ids=IDS)
def test_round_trips(name, d, hparams, make_flow, dtype, tol):
    flow = make_flow(name, d, perturb=PERTURB, **hparams)
    bij = flow.bijector
    # float32: a perturbed 64-D flow (its full data affine fitted on 256 rows) loses ~2 digits
    atol = tol(1e-10, 5e-2 if d > 8 else 1e-3)
    z = flow.distribution.sample(16, seed=3)
    x = bij.forward(z)
    np.testing.assert_allclose(bij.inverse(tf.identity(x)), z, rtol=0, atol=atol)
    x = data(d, n=16, seed=4, dtype=dtype)
    z = bij.inverse(x)
    np.testing.assert_allclose(bij.forward(tf.identity(z)), x, rtol=0, atol=atol)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_samples_agree_with_density_in_2d(name, make_flow, dtype):
    """exp(log_prob) integrated over a box and its bins matches the samples' frequencies."""
    flow = make_flow(name, 2, perturb=0.1)
    lo, hi, fine, coarse = -8.0, 8.0, 160, 8
    edges = np.linspace(lo, hi, fine + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    xx, yy = np.meshgrid(mids, mids, indexing="ij")
    grid = tf.constant(np.stack([xx.ravel(), yy.ravel()], -1), dtype)
    cell_mass = np.exp(flow.log_prob(grid).numpy()).reshape(fine, fine) * (edges[1] - edges[0]) ** 2
    n = 20000
    samples = flow.sample(n, seed=5).numpy()
    inside = np.mean(np.all(np.abs(samples) < hi, axis=1))
    assert inside > 0.8  # the box holds most of the mass, so the comparison means something
    assert cell_mass.sum() == pytest.approx(inside, abs=0.01)
    k = fine // coarse
    bin_mass = cell_mass.reshape(coarse, k, coarse, k).sum(axis=(1, 3))
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=coarse, range=[[lo, hi]] * 2)
    freq = counts / n
    tolerance = 5 * np.sqrt(bin_mass * (1 - bin_mass) / n) + 2e-3
    assert np.all(np.abs(freq - bin_mass) <= tolerance), np.abs(freq - bin_mass).max()


def autoregressive_layers(flow, walk):
    """MAF layers (for IAF, the MAF inside each ``tfb.Invert``): triangular both ways."""
    return [b for b, _ in walk(flow.bijector) if isinstance(b, tfb.MaskedAutoregressiveFlow)]


def assert_lower_triangular(bij, d, dtype):
    z = tf.constant(np.random.RandomState(7).randn(3, d), dtype)
    for fn in (bij.forward, bij.inverse):
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = fn(tf.identity(z))
        jac = tape.batch_jacobian(y, z).numpy()
        assert np.all(jac[:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]] == 0.0)
        assert np.all(np.abs(np.diagonal(jac, axis1=1, axis2=2)) > 0)
        assert np.any(np.abs(jac[:, np.tril_indices(d, -1)[0], np.tril_indices(d, -1)[1]]) > 0)


@pytest.mark.parametrize("sequential", ["full_passes", "by_degree", "by_degree_implicit"])
@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_autoregressive_sparsity_survives_training(
    name, sequential, make_flow, walk, small_hparams, dtype
):
    d = 5
    flow = make_flow(name, d, perturb=PERTURB, sequential=sequential)
    layers = autoregressive_layers(flow, walk)
    assert len(layers) == small_hparams[name]["num_layers"]
    for layer in layers:
        assert_lower_triangular(layer, d, dtype)
    before = [v.numpy().copy() for v in flow.trainable_variables]
    optimizer = tf_keras.optimizers.Adam(learning_rate=0.05)
    x = data(d, n=64, dtype=dtype)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(x))
        variables = flow.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
    assert any(
        np.any(b != v.numpy()) for b, v in zip(before, flow.trainable_variables, strict=True)
    )
    for layer in layers:
        assert_lower_triangular(layer, d, dtype)


@pytest.mark.parametrize("name,d,hparams", [(n, 2, {}) for n in FLOWS] + [("glow", 64, GLOW_IMAGE)])
def test_every_variable_gets_a_gradient(name, d, hparams, make_flow, dtype):
    flow = make_flow(name, d, perturb=PERTURB, **hparams)
    assert flow.trainable_variables
    x = data(d, n=32, dtype=dtype)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x)) - tf.reduce_mean(flow.sample(32, seed=2))
    grads = tape.gradient(loss, flow.trainable_variables)
    for v, g in zip(flow.trainable_variables, grads, strict=True):
        assert g is not None, v.name
        g = tf.convert_to_tensor(g)
        assert np.all(np.isfinite(g)) and np.any(g != 0), v.name


@pytest.mark.parametrize("name,d,hparams", [(n, 3, {}) for n in FLOWS] + [("glow", 64, GLOW_IMAGE)])
def test_checkpoint_restores_identical_log_prob(name, d, hparams, tmp_path, make_flow, dtype):
    flow = make_flow(name, d, perturb=PERTURB, seed=0, **hparams)
    x = data(d, dtype=dtype)
    path = tf.train.Checkpoint(flow=flow).save(str(tmp_path / "ckpt"))
    other = make_flow(name, d, perturb=PERTURB, seed=1, **hparams)
    assert not np.array_equal(other.log_prob(x), flow.log_prob(x))
    tf.train.Checkpoint(flow=other).restore(path).assert_existing_objects_matched()
    fresh = tf.identity(x)  # TFP's bijector cache is keyed on the tensor: use a new one
    np.testing.assert_array_equal(other.log_prob(fresh), flow.log_prob(fresh))
    assert initialize(other, x) == 0  # restored actnorms are not re-initialised


@pytest.mark.parametrize("data_affine", ["full", "diag", "none"])
def test_glow_actnorm_initialisation_standardises_data(data_affine, small_hparams):
    d = 5
    tf.random.set_seed(0)
    flow = build_flow("glow", [d], F64, **small_hparams["glow"], data_affine=data_affine)
    x = tf.random.normal([500, d], dtype=F64) * [1.0, 2.0, 3.0, 4.0, 5.0] + 7.0
    expected = small_hparams["glow"]["num_layers"] + (data_affine != "none")
    assert initialize(flow, x) == expected
    steps = flow.bijector.bijectors[data_affine != "none" :]
    data_side = flow.bijector.bijectors[0].inverse(x) if data_affine != "none" else x
    first_actnorm = steps[0].bijectors[0]
    h = first_actnorm.inverse(data_side).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(h.std(0), 1.0, atol=1e-5)
    maf = build_flow("maf", [d], F64, **small_hparams["maf"], data_affine="none")
    assert initialize(maf, x) == 0


def _default_run_sizes(dataset=None):
    """Hyperparameters of the variant named after each builder in config/config.yaml (with
    ``dataset``, as its jobs on that data set build it)."""
    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    return {
        name: experiment.flow_variant(config, name, dataset)[1]
        for name, variant in config["flows"].items()
        if (variant or {}).get("flow", name) == name
    }


# The default run's sizes, so the identity start is checked where it counts: D = 2 at the sizes
# of the 2-D data set, D = 5 at the base sizes (digits').
DEFAULT_RUN = _default_run_sizes()
DEFAULT_RUN_2D = _default_run_sizes("eight_gaussians")


def test_default_run_has_a_variant_of_every_flow():
    assert set(FLOWS) <= set(DEFAULT_RUN)


@pytest.mark.parametrize("name", sorted(FLOWS))
@pytest.mark.parametrize("d", [2, 5])
def test_untrained_flow_scores_its_base_on_base_samples(name, d):
    """The identity start: initialised on N(0, I) samples, a flow scores N(0, I) on fresh ones."""
    tf.random.set_seed(0)
    flow = build_flow(name, [d], F64, **(DEFAULT_RUN_2D if d == 2 else DEFAULT_RUN)[name])
    rng = np.random.RandomState(0)
    initialize(flow, tf.constant(rng.randn(2000, d)))
    z = tf.constant(rng.randn(2000, d))
    gap = np.mean(flow.log_prob(z)) - np.mean(flow.distribution.log_prob(z))
    assert abs(gap) < 0.5, gap


def far_from_standard(n, d, seed=0):
    """Correlated Gaussian data with large means and scales from 0.2 to 5."""
    rng = np.random.RandomState(seed)
    scale = np.tril(rng.randn(d, d)) + np.diag(np.linspace(0.2, 5.0, d))
    return tf.constant(rng.randn(n, d) @ scale.T + 10.0 * rng.randn(d))


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_untrained_flow_is_the_gaussian_fit_of_its_data(name):
    """After initialize, every flow's log_prob is the full-covariance Gaussian baseline's."""
    d = 5
    x = far_from_standard(1000, d)
    tf.random.set_seed(0)
    flow = build_flow(name, [d], F64, **DEFAULT_RUN[name])
    baseline = build_flow("gaussian", [d], F64)
    initialize(flow, x)
    initialize(baseline, x)
    fresh = far_from_standard(500, d, seed=1)
    # Glow's actnorms re-fit the whitened data, whose variances differ from 1 by the jitter
    atol = 1e-3 if name == "glow" else 1e-6
    np.testing.assert_allclose(flow.log_prob(fresh), baseline.log_prob(fresh), rtol=0, atol=atol)


def test_without_data_affine_an_untrained_flow_is_below_the_gaussian_fit():
    """Control: the identity start alone leaves far-from-standard data at the base density."""
    d = 5
    x = far_from_standard(1000, d)
    flow = build_flow("maf", [d], F64, **DEFAULT_RUN["maf"], data_affine="none")
    baseline = build_flow("gaussian", [d], F64)
    initialize(flow, x)
    initialize(baseline, x)
    assert np.mean(flow.log_prob(x)) < np.mean(baseline.log_prob(x)) - 10.0


@pytest.mark.parametrize("shift_side", ["data", "noise"])
def test_maf_layer_is_the_affine_map_of_its_shift_side(shift_side, make_flow, walk):
    """One MAF layer, MADE outputs ``(c, r)`` at ``x``, ``s = 3 tanh(r / 3)``: the density
    direction is ``z = (x - c) exp(-s)`` (``"data"``) or ``z = x exp(-s) - c`` (``"noise"``)."""
    flow = make_flow(
        "maf", 3, perturb=PERTURB, num_layers=1, data_affine="none", shift_side=shift_side
    )
    layer = next(b for b, _ in walk(flow.bijector) if isinstance(b, tfb.MaskedAutoregressiveFlow))
    x = data(3, n=8, dtype=flow.dtype)
    c, r = np.moveaxis(layer._shift_and_log_scale_fn.made(x).numpy(), -1, 0)
    s = 3.0 * np.tanh(r / 3.0)
    expected = (x.numpy() - c) * np.exp(-s) if shift_side == "data" else x.numpy() * np.exp(-s) - c
    np.testing.assert_allclose(layer.inverse(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_made_initialisation_keeps_the_masks(name, small_hparams):
    """Hidden kernels are drawn through TFP's masked initialiser; the zero output layer too."""
    hparams = small_hparams[name]
    flow = build_flow(name, [5], F64, **hparams)
    constrained = [v for v in flow.trainable_variables if getattr(v, "constraint", None)]
    assert len(constrained) == hparams["num_layers"] * (len(hparams["hidden_units"]) + 1)
    for v in constrained:
        np.testing.assert_array_equal(v.constraint(v), v.numpy())
    assert any(np.any(v.numpy() != 0) for v in constrained)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_first_call_compiled_for_any_batch_size(name, small_hparams):
    """A freshly built (or restored) flow traced with an unknown batch size before any eager
    call, as compiled evaluation does: log_prob and sample work and agree with eager mode."""
    d = 4
    flow = build_flow(name, [d], **small_hparams[name])
    spec = tf.TensorSpec([None, d], tf.float32)
    log_prob = tf.function(flow.log_prob, input_signature=[spec])
    sample = tf.function(lambda n: flow.sample(n, seed=[1, 2]))
    x = tf.random.stateless_normal([5, d], seed=[3, 4])
    np.testing.assert_allclose(log_prob(x), flow.log_prob(tf.identity(x)), rtol=1e-5, atol=1e-5)
    assert sample(tf.constant(3)).shape == (3, d)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_float32_flow_is_float32_finite_and_traceable(name, small_hparams):
    flow = build_flow(name, [2], **small_hparams[name])
    x = tf.random.normal([8, 2])
    lp = flow.log_prob(x)
    np.testing.assert_allclose(tf.function(flow.log_prob)(tf.identity(x)), lp, rtol=1e-5, atol=1e-5)
    assert lp.dtype == tf.float32 and lp.shape == (8,) and np.all(np.isfinite(lp))
    assert flow.sample(4, seed=1).shape == (4, 2)
    assert flow.trainable_variables


@pytest.mark.parametrize(
    "name,hparams,match",
    [
        ("nope", {}, "unknown flow 'nope'"),
        ("maf", {"num_layer": 2}, "num_layer"),
        ("maf", {"num_layers": 0}, "num_layers"),
        ("realnvp", {"hidden_units": []}, "hidden_units"),
        ("nsf", {"num_bins": 1}, "num_bins"),
        ("glow", {"image_shape": [3, 3, 1]}, "image_shape"),
        ("gaussian", {"covariance": "dense"}, "covariance"),
        ("maf", {"order": "sideways"}, "order"),
        ("nsf", {"data_affine": "lu"}, "data_affine"),
    ],
)
def test_bad_hyperparameters_are_named(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        build_flow(name, [4], **hparams)


def test_coupling_flow_needs_two_dimensions():
    with pytest.raises(ValueError, match="D >= 2"):
        build_flow("realnvp", [1])


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_builder_docstring_states_map_cheap_direction_and_reference(name):
    doc = FLOWS[name].__doc__
    assert "Map" in doc and "cheap" in doc and "arXiv:" in doc and "References" in doc


def test_sparsity_check_catches_a_mask_ignoring_update(make_flow, walk, dtype):
    """Control: a plain gradient step ignores MADE's kernel constraints and breaks the order."""
    d = 5
    flow = make_flow("maf", d, perturb=PERTURB)
    x = data(d, n=64, dtype=dtype)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    grads = tape.gradient(loss, flow.trainable_variables)
    for v, g in zip(flow.trainable_variables, grads, strict=True):
        v.assign_sub(0.5 * g)
    with pytest.raises(AssertionError):
        for layer in autoregressive_layers(flow, walk):
            assert_lower_triangular(layer, d, dtype)
