"""Distillation: the teacher-pair bank, metrics that see a missing mode, and mode coverage."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from flows_tf import distill_bank, evaluate, objectives, traces, train
from flows_tf.datasets import toy
from flows_tf.flows import build_flow

tfb, tfd = tfp.bijectors, tfp.distributions

TWO_MODES = {"means": [[-2.5, 0.0], [2.5, 0.0]], "scales": [0.4, 0.4], "weights": [0.5, 0.5]}


def _mixture_samples(components, n, seed):
    rng = np.random.default_rng(seed)
    means = np.asarray(components["means"])
    k = rng.choice(len(means), size=n, p=components["weights"])
    noise = rng.standard_normal((n, means.shape[1]))
    return means[k] + np.asarray(components["scales"])[k, None] * noise


def _train(flow, loss_fn, steps, learning_rate, seed=0):
    """Adam (tf_keras, so MADE masks hold) on ``loss_fn(flow, step_seed)``, one compiled step."""
    variables = list(flow.trainable_variables)
    optimizer = tf_keras.optimizers.Adam(learning_rate)

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
    def step(step_seed):
        with tf.GradientTape() as tape:
            loss = loss_fn(flow, step_seed)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    for t in range(steps):
        step(tf.constant([seed, t], tf.int32))
    return flow


# --- the bank ---------------------------------------------------------------------------------


def test_bank_holds_the_teachers_own_pairs_and_depends_on_its_seed_only(small_hparams):
    train.set_seeds(0)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    bank = distill_bank.build_teacher_pairs(teacher, 1000, batch_size=300, seed=3)
    assert bank.size == 1000 and bank.z.shape == bank.x.shape == (1000, 2)
    np.testing.assert_allclose(
        bank.x.numpy(), teacher.bijector.forward(tf.identity(bank.z)).numpy(), atol=1e-12
    )
    again = distill_bank.build_teacher_pairs(teacher, 1000, batch_size=300, seed=3)
    np.testing.assert_array_equal(bank.z.numpy(), again.z.numpy())
    other = distill_bank.build_teacher_pairs(teacher, 1000, batch_size=300, seed=4)
    assert not np.allclose(bank.z.numpy(), other.z.numpy())
    assert len(np.unique(bank.z.numpy()[:, 0])) == 1000  # batches do not repeat their noise
    # the bank's noise is not the evaluation's (seed, -1 - stream) nor a training step's
    for counter in (0, 1, -1, -2):
        z = teacher.distribution.sample(300, seed=tf.constant([3, counter], tf.int32))
        assert not np.isin(z.numpy()[:, 0], bank.z.numpy()[:, 0]).any()


def test_a_variants_teachers_share_the_banks_trace_each_with_its_own_pairs(make_flow, monkeypatch):
    teachers = [make_flow("maf", perturb=0.1, seed=s) for s in (0, 1)]
    spec = {"builder": "maf", "event_shape": [2]}
    alone = [distill_bank.build_teacher_pairs(t, 500, batch_size=200, seed=s)
             for s, t in enumerate(teachers)]  # fmt: skip
    built = []
    drawer = distill_bank._drawer
    monkeypatch.setattr(distill_bank, "_drawer", lambda *a: built.append(a) or drawer(*a))
    with traces.reuse_traces():  # as a variant's seeds in one training job
        hosted = [
            distill_bank.build_teacher_pairs(traces.host(t, spec), 500, batch_size=200, seed=s)
            for s, t in enumerate(teachers)
        ]
    assert len(built) == 1  # one trace for both teachers ...
    assert not np.allclose(alone[0].x.numpy(), alone[1].x.numpy())
    for bank, own in zip(hosted, alone, strict=True):  # ... each with its own pairs
        np.testing.assert_array_equal(bank.z.numpy(), own.z.numpy())
        np.testing.assert_array_equal(bank.x.numpy(), own.x.numpy())


def test_draw_pairs_takes_rows_of_the_bank_deterministically(small_hparams):
    train.set_seeds(1)
    teacher = build_flow("maf", [2], **small_hparams["maf"])
    bank = distill_bank.build_teacher_pairs(teacher, 50, seed=0)
    z, x = distill_bank.draw_pairs(bank, 200, tf.constant([1, 2]))
    rows = {tuple(r) for r in np.concatenate([bank.z.numpy(), bank.x.numpy()], axis=1)}
    assert all(tuple(r) in rows for r in np.concatenate([z.numpy(), x.numpy()], axis=1))
    z2, _ = distill_bank.draw_pairs(bank, 200, tf.constant([1, 2]))
    np.testing.assert_array_equal(z.numpy(), z2.numpy())
    z3, _ = distill_bank.draw_pairs(bank, 200, tf.constant([1, 3]))
    assert not np.array_equal(z.numpy(), z3.numpy())


@pytest.mark.parametrize("key, value", [("n", 0), ("batch_size", -1), ("n", 2.5)])
def test_bank_refuses_bad_sizes(key, value, small_hparams):
    teacher = build_flow("maf", [2], **small_hparams["maf"])
    args = {"n": 10, "batch_size": 4, key: value}
    with pytest.raises(ValueError, match=f"{key}={value!r}"):
        distill_bank.build_teacher_pairs(teacher, args.pop("n"), **args)


def test_bank_keeps_the_pairs_near_the_data_and_counts_the_rest():
    z = tf.constant(np.arange(12.0).reshape(6, 2))
    x = tf.constant([[0.0, 0.0], [1.0, 2.0], [1.5, -0.5], [-0.6, 1.0], [1.0, 2.6], [9.0, 9.0]])
    data = np.array([[0.0, 0.0], [1.0, 2.0]])  # box [0, 1] x [0, 2]; half widths 0.5 and 1
    kept, dropped = distill_bank.keep_near_data(distill_bank.TeacherPairs(z=z, x=x), data)
    np.testing.assert_array_equal(kept.x.numpy(), x.numpy()[[0, 1, 2, 4]])
    np.testing.assert_array_equal(kept.z.numpy(), z.numpy()[[0, 1, 2, 4]])  # pairs stay paired
    assert dropped == 2
    with pytest.raises(ValueError, match="no teacher sample"):
        distill_bank.keep_near_data(distill_bank.TeacherPairs(z=z[5:], x=x[5:]), data)


def test_paired_distillation_fits_to_the_bank_near_its_training_data(tmp_path, small_hparams):
    teacher = build_flow("maf", [2], **small_hparams["maf"])  # untrained: samples N(0, I)
    student = build_flow("iaf", [2], **small_hparams["iaf"])
    data = np.array([[-1.0, -1.0], [1.0, 1.0]])  # box widened to [-2, 2]^2: ~9 % outside
    settings = {"steps": 2, "batch_size": 8, "eval_every": 1, "bank_size": 500}
    settings |= {"pretrain_steps": 1, "forward_weight": 0.0}
    lines = []
    train.fit(student, "distill_paired", teacher=teacher, train=data, workdir=tmp_path,
              seed=0, settings=settings, progress=lines.append)  # fmt: skip
    _, dropped = distill_bank.keep_near_data(distill_bank.build_teacher_pairs(teacher, 500), data)
    assert 20 < dropped < 80
    assert any(f"{500 - dropped} pairs, {dropped} of 500 dropped" in line for line in lines)


# --- mixture components and mode fractions ----------------------------------------------------


def test_eight_gaussians_components_generate_its_samples_and_density():
    comps = toy.mixture_components("eight_gaussians")
    assert comps["means"].shape == (8, 2) and float(comps["weights"].sum()) == pytest.approx(1)
    np.testing.assert_allclose(np.linalg.norm(comps["means"], axis=1), 2 * np.sqrt(2))
    x = toy.sample_toy("eight_gaussians", 40000, np.random.default_rng(0))
    fractions = evaluate.mode_fractions(x, comps)
    np.testing.assert_allclose(fractions, 1 / 8, atol=0.008)  # 4.5 binomial SE
    dens = np.zeros(len(x))  # the mixture formula, term by term
    for mu, s, w in zip(comps["means"], comps["scales"], comps["weights"], strict=True):
        dens += w * np.exp(-0.5 * ((x - mu) ** 2).sum(1) / s**2) / (2 * np.pi * s**2)
    np.testing.assert_allclose(toy.toy_log_prob("eight_gaussians", x), np.log(dens), rtol=1e-10)
    assert toy.mixture_components("rings") is None
    with pytest.raises(ValueError, match="'nine_gaussians'"):
        toy.mixture_components("nine_gaussians")


def test_mode_metrics_see_a_missing_mode_and_use_the_weights():
    x = _mixture_samples(TWO_MODES, 2000, 0)
    full = evaluate.mode_metrics(x, TWO_MODES)
    assert full["mode_fraction_max_deviation"] < 0.04 and full["modes_below_half_weight"] == 0
    one_mode = evaluate.mode_metrics(x[x[:, 0] > 0], TWO_MODES)
    assert one_mode == {
        "mode_fraction_0": 0.0,
        "mode_fraction_1": 1.0,
        "mode_fraction_max_deviation": 0.5,
        "modes_below_half_weight": 1.0,
    }
    # against a teacher that itself holds 3/4 of its samples in the right-hand mode
    teacher_x = np.concatenate([x[x[:, 0] > 0][:300], x[x[:, 0] < 0][:100]])
    against = evaluate.mode_metrics(x[x[:, 0] > 0], TWO_MODES, x_teacher=teacher_x)
    assert against["teacher_mode_fraction_max_deviation"] == pytest.approx(0.25)
    assert against["mode_fraction_max_deviation_from_teacher"] == pytest.approx(0.25)
    # a point halfway goes to the heavier component (responsibility, not only distance)
    lopsided = {**TWO_MODES, "weights": [0.2, 0.8]}
    np.testing.assert_array_equal(evaluate.mode_fractions([[0.0, 0.0]], lopsided), [0.0, 1.0])
    with pytest.raises(ValueError, match="x must be"):
        evaluate.mode_fractions(np.zeros((3, 3)), TWO_MODES)
    with pytest.raises(ValueError, match="components"):
        evaluate.mode_fractions(x, {**TWO_MODES, "weights": [1.0]})


# --- metrics of a student against its teacher --------------------------------------------------


def test_student_metrics_of_a_flow_against_itself_and_a_shifted_copy(small_hparams):
    train.set_seeds(2)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    test = _mixture_samples(TWO_MODES, 500, 1)
    same = evaluate.student_metrics(teacher, teacher, n=500, test=test, components=TWO_MODES)
    for key in ("kl_to_teacher", "forward_kl_to_teacher", "test_loglik_gap_to_teacher"):
        assert same[key] == pytest.approx(0.0, abs=1e-9), key
    assert same["student_test_loglik"] == pytest.approx(same["teacher_test_loglik"])
    assert all(isinstance(v, float) for v in same.values())
    # N(c, I) against N(0, I): log p_T - log q_S = |c|^2 / 2 - x.c, of mean |c|^2 / 2 = 0.5
    c = np.array([0.6, -0.8])
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, tf.float64), 1.0), [2])
    standard = tfd.TransformedDistribution(base, tfb.Identity())
    shifted = tfd.TransformedDistribution(base, tfb.Shift(tf.constant(c)))
    forward = evaluate.forward_kl_to_teacher(shifted, standard, n=4000)
    se = forward["forward_kl_to_teacher_se"]
    assert se == pytest.approx(1.0 / np.sqrt(4000), rel=0.1)  # std(x.c) = |c| = 1
    assert forward["forward_kl_to_teacher"] == pytest.approx(0.5, abs=4 * se)
    gap = evaluate.loglik_against_teacher(shifted, standard, test)
    per_example = 0.5 * (test**2).sum(1) - 0.5 * ((test - c) ** 2).sum(1)
    assert gap["test_loglik_gap_to_teacher"] == pytest.approx(per_example.mean(), rel=1e-9)
    assert gap["test_loglik_gap_to_teacher_se"] == pytest.approx(
        per_example.std(ddof=1) / np.sqrt(len(test)), rel=1e-9
    )


# --- reverse KL drops a mode; the default objective does not ---------------------------------


def _mode_metrics(student, n=4000):
    x, _ = objectives.sample_and_log_prob(student, n, seed=[9, 9])
    return evaluate.mode_metrics(x.numpy(), TWO_MODES)


def _fractions(student):
    m = _mode_metrics(student)
    return np.array([m["mode_fraction_0"], m["mode_fraction_1"]])


MODE_TEST_FLOW = {"num_layers": 3, "hidden_units": [32, 32]}
ANCHOR_WEIGHT = 10.0  # config/config.yaml: distill, eight_gaussians


def _reverse_kl(teacher, bank):
    def loss(student, s):
        return objectives.distillation_loss(student, teacher, 256, seed=s)

    return [(loss, 300, 2e-3)]


def _default_objective(teacher, bank):
    """The default's two stages (config/config.yaml, distill): paired regression on the bank,
    then reverse KL + 10 x forward KL on 128 bank samples + the paired anchor, at the
    fine-tuning learning rate."""

    def paired(student, s):
        return objectives.paired_regression_loss(student, *distill_bank.draw_pairs(bank, 256, s))

    def mixed(student, s):
        _, x_teacher = distill_bank.draw_pairs(bank, 128, s[::-1])
        covering = objectives.mass_covering_distillation_loss(
            student, teacher, 256, x_teacher, forward_weight=10.0, seed=s
        )
        return covering + ANCHOR_WEIGHT * paired(student, s)

    return [(paired, 300, 3e-3), (mixed, 300, 5e-4)]


def _student_on_one_mode(bank):
    """An IAF that has found the right-hand mode only: regressed onto the bank's pairs with
    every teacher sample folded to ``x_1 > 0`` (parallel; no inverse)."""
    train.set_seeds(1)
    student = build_flow("iaf", [2], **MODE_TEST_FLOW)
    z, x = bank.z[:512], bank.x[:512]
    folded = tf.concat([tf.abs(x[:, :1]), x[:, 1:]], axis=1)
    _train(student, lambda flow, s: objectives.paired_regression_loss(flow, z, folded), 100, 1e-2)
    return student


def test_reverse_kl_keeps_a_missing_mode_missing_and_the_default_objective_finds_it():
    """A student that has found one of two modes stays there under reverse KL.

    Reverse KL charges only ``log 2`` for the missing half and no student sample lies near it,
    so no gradient points there; paired regression followed by reverse plus forward KL (the
    default) moves mass over until neither mode is below half its weight. The exact split is
    weakly identified (a 0.4 / 0.6 split costs 0.02 nats of either KL, below one step's Monte
    Carlo noise), so it varies with the seed and the machine's rounding by up to ~0.2:
    ``modes_below_half_weight`` is what can tell a dropped mode from a held one.
    """
    train.set_seeds(0)
    teacher = build_flow("maf", [2], **MODE_TEST_FLOW)
    data = tf.constant(_mixture_samples(TWO_MODES, 4096, 2), tf.float32)
    _train(teacher, lambda flow, s: objectives.mle_loss(flow, data), 300, 1e-2)
    assert np.abs(_fractions(teacher) - 0.5).max() < 0.03, _fractions(teacher)
    bank = distill_bank.build_teacher_pairs(teacher, 8192, seed=0)
    results = {}
    for name, objective in (("reverse_kl", _reverse_kl), ("default", _default_objective)):
        student = _student_on_one_mode(bank)
        assert _fractions(student)[0] < 0.01  # the common start: the right-hand mode only
        for i, (loss, steps, learning_rate) in enumerate(objective(teacher, bank)):
            _train(student, loss, steps, learning_rate, seed=i + 1)
        results[name] = _mode_metrics(student)
    assert results["reverse_kl"]["mode_fraction_0"] < 0.05, results  # a mode dropped
    assert results["default"]["modes_below_half_weight"] == 0, results  # both held
