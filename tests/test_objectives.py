"""Objectives: exact identities of the one-pass density, annealing, and loss decrease."""

import numpy as np
import pytest
import tensorflow as tf

from flows_tf import objectives, train
from flows_tf.flows import build_flow

SMALL = {"num_layers": 2, "hidden_units": [8, 8]}


@pytest.mark.parametrize("name", ["iaf", "maf", "realnvp", "planar"])
def test_one_pass_log_prob_matches_log_prob(name):
    train.set_seeds(1)
    hparams = {"num_layers": 2} if name == "planar" else SMALL
    flow = build_flow(name, [3], dtype=tf.float64, **hparams)
    x, log_q = objectives.sample_and_log_prob(flow, 64, seed=[4, 2])
    # tf.identity: the bijector cache must not hand back the forward pass's own values
    expected = flow.log_prob(tf.identity(x))
    np.testing.assert_allclose(log_q.numpy(), expected.numpy(), rtol=1e-8, atol=1e-8)


def test_anneal_beta_follows_schedule():
    values = [float(objectives.anneal_beta(t, 100)) for t in (0, 50, 99, 100, 500)]
    np.testing.assert_allclose(values, [0.01, 0.51, 1.0, 1.0, 1.0])
    assert float(objectives.anneal_beta(7, 0)) == 1.0


def test_reverse_kl_of_exact_target_is_minus_log_z():
    train.set_seeds(2)
    flow = build_flow("realnvp", [2], dtype=tf.float64, **SMALL)
    c = 1.7

    def target(x):  # p~ = q * e^c, so log q - log p~ = -c for every sample
        return flow.log_prob(x) + c

    loss = objectives.reverse_kl_loss(flow, target, 128, seed=[0, 1])
    assert float(loss) == pytest.approx(-c, abs=1e-9)
    x, log_q = objectives.sample_and_log_prob(flow, 128, seed=[0, 1])
    annealed = objectives.reverse_kl_loss(flow, target, 128, beta=0.25, seed=[0, 1])
    assert float(annealed) == pytest.approx(float(tf.reduce_mean(0.75 * log_q - 0.25 * c)))


def test_distillation_from_itself_is_zero_and_gradient_reaches_student_only():
    train.set_seeds(3)
    teacher = build_flow("maf", [2], dtype=tf.float64, **SMALL)
    student = build_flow("iaf", [2], dtype=tf.float64, **SMALL)
    assert float(objectives.distillation_loss(teacher, teacher, 64, seed=[1, 1])) == (
        pytest.approx(0.0, abs=1e-9)
    )
    with tf.GradientTape() as tape:
        loss = objectives.distillation_loss(student, teacher, 64, seed=[1, 2])
    grads = tape.gradient(loss, student.trainable_variables)
    assert any(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads if g is not None)


def test_annealed_distillation_tempers_only_the_teacher():
    train.set_seeds(4)
    teacher = build_flow("maf", [2], dtype=tf.float64, **SMALL)
    student = build_flow("iaf", [2], dtype=tf.float64, **SMALL)
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


def test_each_objective_decreases_its_loss(tmp_path):
    train.set_seeds(0)
    flow = build_flow("maf", [2], **SMALL)
    result = train.fit(
        flow,
        "mle",
        train=_gaussian_data(1024, 0),
        val=_gaussian_data(256, 1),
        settings={"batch_size": 128, "max_epochs": 8, "learning_rate": 1e-2},
        workdir=tmp_path / "mle",
        seed=0,
    )
    _decreased(result.history, 0.3)

    def target(x):  # an unnormalised Gaussian away from the base
        return -0.5 * tf.reduce_sum(((x - [1.0, -2.0]) / [0.5, 1.0]) ** 2, axis=-1)

    q = build_flow("realnvp", [2], **SMALL)
    result = train.fit(
        q,
        "vi",
        target=target,
        workdir=tmp_path / "vi",
        seed=0,
        settings={"batch_size": 128, "steps": 150, "log_every": 25, "learning_rate": 1e-2},
    )
    _decreased(result.history, 0.5)
    assert result.traces == 1  # the annealed step takes beta as a tensor: no retrace per step

    student = build_flow("iaf", [2], **SMALL)
    result = train.fit(
        student,
        "distill",
        teacher=flow,
        workdir=tmp_path / "distill",
        seed=0,
        settings={"batch_size": 128, "steps": 150, "log_every": 25, "learning_rate": 1e-2},
    )
    _decreased(result.history, 0.2)
    assert result.traces == 1
