"""Objectives: exact identities of the one-pass density, annealing, and loss decrease."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from flows_tf import flows, objectives, train
from flows_tf.flows import build_flow


@pytest.mark.parametrize("name", ["iaf", "maf", "realnvp", "planar"])
def test_one_pass_log_prob_matches_log_prob(name, small_hparams):
    train.set_seeds(1)
    flow = build_flow(name, [3], dtype=tf.float64, **small_hparams[name])
    x, log_q = objectives.sample_and_log_prob(flow, 64, seed=[4, 2])
    # tf.identity: the bijector cache must not hand back the forward pass's own values
    expected = flow.log_prob(tf.identity(x))
    np.testing.assert_allclose(log_q.numpy(), expected.numpy(), rtol=1e-8, atol=1e-8)


def test_anneal_beta_follows_schedule():
    values = [float(objectives.anneal_beta(t, 100)) for t in (0, 50, 99, 100, 500)]
    np.testing.assert_allclose(values, [0.01, 0.51, 1.0, 1.0, 1.0])
    assert float(objectives.anneal_beta(7, 0)) == 1.0


def test_reverse_kl_of_exact_target_is_minus_log_z(small_hparams):
    train.set_seeds(2)
    flow = build_flow("realnvp", [2], dtype=tf.float64, **small_hparams["realnvp"])
    c = 1.7

    def target(x):  # p~ = q * e^c, so log q - log p~ = -c for every sample
        return flow.log_prob(x) + c

    loss = objectives.reverse_kl_loss(flow, target, 128, seed=[0, 1])
    assert float(loss) == pytest.approx(-c, abs=1e-9)
    x, log_q = objectives.sample_and_log_prob(flow, 128, seed=[0, 1])
    annealed = objectives.reverse_kl_loss(flow, target, 128, beta=0.25, seed=[0, 1])
    assert float(annealed) == pytest.approx(float(tf.reduce_mean(0.75 * log_q - 0.25 * c)))


def test_distillation_from_itself_is_zero_and_gradient_reaches_student_only(small_hparams):
    train.set_seeds(3)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    student = build_flow("iaf", [2], dtype=tf.float64, **small_hparams["iaf"])
    assert float(objectives.distillation_loss(teacher, teacher, 64, seed=[1, 1])) == (
        pytest.approx(0.0, abs=1e-9)
    )
    with tf.GradientTape() as tape:
        loss = objectives.distillation_loss(student, teacher, 64, seed=[1, 2])
    grads = tape.gradient(loss, student.trainable_variables)
    assert any(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads if g is not None)


def test_annealed_distillation_tempers_only_the_teacher(small_hparams):
    train.set_seeds(4)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    student = build_flow("iaf", [2], dtype=tf.float64, **small_hparams["iaf"])
    x, log_q = objectives.sample_and_log_prob(student, 64, seed=[2, 5])
    log_p = teacher.log_prob(tf.identity(x))
    annealed = objectives.distillation_loss(student, teacher, 64, beta=0.3, seed=[2, 5])
    plain = objectives.distillation_loss(student, teacher, 64, seed=[2, 5])
    assert float(annealed) == pytest.approx(float(tf.reduce_mean(log_q - 0.3 * log_p)), rel=1e-6)
    assert float(plain) == pytest.approx(float(tf.reduce_mean(log_q - log_p)), rel=1e-6)
    assert abs(float(plain) - float(annealed)) > 0.1  # the temperature changes the loss


def _gaussian_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)) * [0.5, 1.5] + [2.0, -1.0]
    return x.astype(np.float32)


def _decreased(history, drop):
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert last < first - drop, (first, last)


def test_each_objective_decreases_its_loss(tmp_path, small_hparams):
    train.set_seeds(0)
    flow = build_flow("maf", [2], **small_hparams["maf"])
    result = train.fit(
        flow,
        "mle",
        train=_banana(1024, 0).astype(np.float32),  # not Gaussian: the data affine's init
        val=_banana(256, 1).astype(np.float32),  # (the Gaussian fit) leaves work to do
        settings={"batch_size": 128, "max_epochs": 8, "learning_rate": 1e-2},
        workdir=tmp_path / "mle",
        seed=0,
    )
    _decreased(result.history, 0.3)

    def target(x):  # an unnormalised Gaussian away from the base
        return -0.5 * tf.reduce_sum(((x - [1.0, -2.0]) / [0.5, 1.0]) ** 2, axis=-1)

    q = build_flow("realnvp", [2], **small_hparams["realnvp"])
    result = train.fit(
        q,
        "vi",
        target=target,
        workdir=tmp_path / "vi",
        seed=0,
        settings={"batch_size": 128, "steps": 150, "eval_every": 25, "learning_rate": 1e-2},
    )
    _decreased(result.history, 0.5)
    assert result.traces == 1  # the annealed step takes beta as a tensor: no retrace per step

    student = build_flow("iaf", [2], **small_hparams["iaf"])
    result = train.fit(
        student,
        "distill",
        teacher=flow,
        workdir=tmp_path / "distill",
        seed=0,
        settings={"batch_size": 128, "steps": 150, "eval_every": 25, "learning_rate": 1e-2},
    )
    _decreased(result.history, 0.2)
    assert result.traces == 1


def _banana(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return np.stack([z[:, 0], 0.5 * z[:, 1] + 0.6 * z[:, 0] ** 2 - 1.0], axis=1)


def _fitted(flow, loss_fn, steps):
    """A few Adam steps on ``loss_fn()``, so the flow is no longer the identity.

    tf_keras' Adam applies the MADE masks' kernel constraints; a hand-made perturbation of the
    weights would break the autoregressive structure (and with it ``T^{-1}(T(z)) = z``).
    """
    optimizer = tf_keras.optimizers.Adam(0.05)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables, strict=True))

    for _ in range(steps):
        step()
    return flow


def _fitted_pair(seed, small_hparams):
    """A MAF teacher fitted to a banana, an IAF student a few distillation steps towards it."""
    train.set_seeds(seed)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    x = tf.constant(_banana(256, seed), tf.float64)
    _fitted(teacher, lambda: objectives.mle_loss(teacher, x), 30)
    student = build_flow("iaf", [2], dtype=tf.float64, **small_hparams["iaf"])
    _fitted(student, lambda: objectives.distillation_loss(student, teacher, 64, seed=[seed, 0]), 10)
    return teacher, student


@pytest.fixture(scope="module")
def pair(small_hparams):
    """A (teacher MAF, student IAF) pair in float64, neither the identity nor equal."""
    return _fitted_pair(5, small_hparams)


def test_teacher_latent_and_log_prob_match_the_flow(pair):
    teacher, _ = pair
    x = tf.constant(np.random.default_rng(0).standard_normal((32, 2)) * 2.0)
    u, log_p = objectives.teacher_latent_and_log_prob(teacher, x)
    np.testing.assert_allclose(log_p.numpy(), teacher.log_prob(tf.identity(x)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(u.numpy(), teacher.bijector.inverse(tf.identity(x)).numpy())


def test_paired_regression_is_the_mean_squared_distance(pair):
    _, student = pair
    z = tf.constant(np.random.default_rng(1).standard_normal((64, 2)))
    x = student.bijector.forward(tf.identity(z))
    assert float(objectives.paired_regression_loss(student, z, x)) == pytest.approx(0.0, abs=1e-20)
    shifted = x + tf.constant([0.3, -0.4], tf.float64)  # every pair off by (0.3, -0.4)
    loss = objectives.paired_regression_loss(student, z, shifted)
    assert float(loss) == pytest.approx(0.3**2 + 0.4**2, rel=1e-9)


def test_latent_regression_vanishes_only_when_the_maps_agree(pair):
    teacher, student = pair
    # the teacher distilled into itself: T^{-1}(T(z)) = z
    same = objectives.latent_regression_loss(teacher, teacher, 64, seed=[3, 1])
    assert float(same) == pytest.approx(0.0, abs=1e-18)
    other = objectives.latent_regression_loss(student, teacher, 64, seed=[3, 1])
    z = student.distribution.sample(64, seed=[3, 1])
    u = teacher.bijector.inverse(tf.identity(student.bijector.forward(z)))
    expected = tf.reduce_mean(tf.reduce_sum((u - z) ** 2, axis=-1))
    assert float(other) == pytest.approx(float(expected), rel=1e-9)
    assert float(other) > 1e-3


def test_anchored_distillation_adds_the_weighted_anchor(pair):
    teacher, student = pair
    seed, n, w = [4, 4], 64, 0.7
    kl = float(objectives.distillation_loss(student, teacher, n, seed=seed))
    latent = float(objectives.latent_regression_loss(student, teacher, n, seed=seed))
    z = tf.constant(np.random.default_rng(2).standard_normal((32, 2)))
    pairs = (z, teacher.bijector.forward(z))
    paired = float(objectives.paired_regression_loss(student, *pairs))
    assert float(
        objectives.anchored_distillation_loss(student, teacher, n, anchor_weight=0.0, seed=seed)
    ) == pytest.approx(kl, rel=1e-10)
    with_latent = objectives.anchored_distillation_loss(
        student, teacher, n, anchor_weight=w, seed=seed
    )
    assert float(with_latent) == pytest.approx(kl + w * latent, rel=1e-10)
    with_pairs = objectives.anchored_distillation_loss(
        student, teacher, n, anchor_weight=w, pairs=pairs, seed=seed
    )
    assert float(with_pairs) == pytest.approx(kl + w * paired, rel=1e-10)
    assert abs(latent - paired) > 1e-3  # the two anchors are different numbers
    with pytest.raises(ValueError, match="anchor_weight=-1.0"):
        objectives.anchored_distillation_loss(student, teacher, n, anchor_weight=-1.0)


def test_forward_kl_runs_on_a_bounded_sub_batch_only(pair):
    teacher, student = pair
    x = teacher.sample(16, seed=[5, 1])
    nll = objectives.forward_kl_loss(student, x)
    # x + 0.0: a new tensor, which no bijector cache (shared by the data affines) can answer
    assert float(nll) == pytest.approx(-float(tf.reduce_mean(student.log_prob(x + 0.0))))
    with pytest.raises(ValueError, match="max_rows=8"):
        objectives.forward_kl_loss(student, x, max_rows=8)
    mixed = objectives.mass_covering_distillation_loss(
        student, teacher, 64, x, forward_weight=2.0, seed=[6, 1]
    )
    kl = objectives.distillation_loss(student, teacher, 64, seed=[6, 1])
    assert float(mixed) == pytest.approx(float(kl) + 2.0 * float(nll), rel=1e-10)


def test_teacher_never_reads_the_students_bijector_cache(small_hparams):
    """Two flows built alike share TFP's cache for their parameter-free data-side layers."""
    train.set_seeds(10)
    teacher = build_flow("maf", [2], dtype=tf.float64, **small_hparams["maf"])
    student = build_flow("iaf", [2], dtype=tf.float64, **small_hparams["iaf"])
    data = np.random.default_rng(3).standard_normal((500, 2)) @ [[2.0, 0.5], [0.0, 0.3]] + 4.0
    flows.initialize(teacher, data)  # the teacher's data affine (if any) now differs
    x, log_q = objectives.sample_and_log_prob(student, 64, seed=[7, 1])
    expected = tf.reduce_mean(log_q - teacher.log_prob(tf.identity(x)))
    loss = objectives.distillation_loss(student, teacher, 64, seed=[7, 1])
    assert float(loss) == pytest.approx(float(expected), rel=1e-10)
    anchored = objectives.anchored_distillation_loss(
        student, teacher, 64, anchor_weight=0.0, seed=[7, 1]
    )
    assert float(anchored) == pytest.approx(float(expected), rel=1e-10)


def test_paired_distillation_without_forward_weight_never_inverts_the_student(pair, monkeypatch):
    """``forward_weight: 0`` skips the forward term (the student's sequential inverse)."""
    from flows_tf.objectives.distill import DistillPaired

    teacher, student = pair
    settings = train.check_settings(
        {
            "steps": 4,
            "pretrain_steps": 0,
            "bank_size": 64,
            "forward_weight": 0.0,
            "anchor_weight": 1.0,
            "batch_size": 16,
        },
        DistillPaired.extra_settings,
    )
    objective = DistillPaired(student, settings, 0, teacher=teacher)
    seed, beta = tf.constant([0, 3], tf.int32), tf.constant(1.0, tf.float64)
    expected = float(objective.loss(seed, beta))

    def inverted(*args, **kwargs):
        raise AssertionError("the forward term ran at weight 0")

    monkeypatch.setattr(objectives.losses, "forward_kl_loss", inverted)
    assert float(objective.loss(seed, beta)) == expected


@pytest.mark.parametrize("anneal_steps", [600, 0])
def test_sampled_block_gives_each_steps_seed_and_beta(anneal_steps):
    flow = build_flow("gaussian", [2], dtype=tf.float64)
    settings = {"batch_size": 8, "steps": 2000, "eval_every": 100, "anneal_steps": anneal_steps}
    objective = objectives.ReverseKL(flow, settings, seed=5, target=lambda x: -tf.reduce_sum(x))
    seeds, betas = objective.block(590, 20)
    np.testing.assert_array_equal(seeds, [[5, t] for t in range(590, 610)])
    # one vectorised call, bit for bit the step-by-step schedule
    expected = [float(objectives.anneal_beta(t, anneal_steps)) for t in range(590, 610)]
    np.testing.assert_array_equal(betas, expected)
    assert betas.shape == (20,) and (anneal_steps == 0 or betas[0] < 1.0 == betas[-1])
