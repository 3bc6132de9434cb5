"""Energy targets U1-U4 (Rezende and Mohamed 2015): values, the box wall, log Z, the TF path."""

import math

import numpy as np
import pytest

import flows_tf.datasets as D
from flows_tf.datasets.energy import BOX, WALL_SCALE

NAMES = ["u1", "u2", "u3", "u4"]
POINTS = np.array([[0.0, 0.0], [1.0, -0.5], [-2.5, 1.7], [3.1, 2.9], [0.3, -3.8]])


def _paper_u(name, z1, z2):
    """Table 1 of the paper, written out scalar by scalar with the math module."""
    w1 = math.sin(2 * math.pi * z1 / 4)
    w2 = 3 * math.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
    if name == "u1":
        r = math.hypot(z1, z2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - math.log(
            math.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + math.exp(-0.5 * ((z1 + 2) / 0.6) ** 2)
        )
    if name == "u2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "u3":
        return -math.log(
            math.exp(-0.5 * ((z2 - w1) / 0.35) ** 2) + math.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2)
        )
    return -math.log(
        math.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + math.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2)
    )


@pytest.mark.parametrize("name", NAMES)
def test_values_inside_the_box_are_minus_u(name):
    target = D.energy_target(name)
    want = np.array([-_paper_u(name, *p) for p in POINTS])
    np.testing.assert_allclose(target.numpy_log_prob(POINTS), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(target.potential(POINTS), -want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_wall_outside_the_box(name):
    target = D.energy_target(name)
    z = np.array([[BOX + 0.2, 0.5], [-BOX - 0.3, -BOX - 0.1]])
    wall = 0.5 * np.array([(0.2 / WALL_SCALE) ** 2, (0.3 / WALL_SCALE) ** 2 + 1.0])
    np.testing.assert_allclose(target.numpy_log_prob(z), -target.potential(z) - wall, rtol=1e-12)


def test_log_z_of_u2_in_closed_form():
    # U2 is a Gaussian of width 0.4 in z2 around w1(z1) for every z1 (|w1| <= 1, 7.5 widths
    # inside the box), so Z = 0.4 sqrt(2 pi) * (8 + 2 * 0.1 sqrt(2 pi) / 2) up to ~1e-12.
    want = math.log(0.4 * math.sqrt(2 * math.pi)) + math.log(
        8 + WALL_SCALE * math.sqrt(2 * math.pi)
    )
    assert D.energy_target("u2").log_z == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_log_z_quadrature_converged(name):
    target = D.energy_target(name)
    coarse = target.log_z_quadrature(n=801)
    assert abs(coarse - target.log_z) < 1e-5
    assert abs(target.log_z_quadrature(n=801, pad=2.5) - coarse) < 1e-5  # the wall region is in
    assert np.isfinite(target.log_z) and 0.0 < target.log_z < math.log(64.0 + 10.0)


def test_unknown_energy_target():
    with pytest.raises(D.DataError, match=r"'u5' is not an energy target.*u1"):
        D.energy_target("u5")
    with pytest.raises(D.DataError, match="not an energy target"):
        D.energy_target("rings")


@pytest.mark.parametrize("name", NAMES)
def test_tensorflow_path_values_and_gradients(name):
    tf = pytest.importorskip("tensorflow")
    target = D.energy_target(name)
    z = np.concatenate([POINTS, [[BOX + 0.2, -BOX - 0.4]]])
    zt = tf.constant(z, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        out = target(zt)
    assert out.shape == (len(z),) and out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), target.numpy_log_prob(z), rtol=1e-12)
    grad = tape.gradient(out, zt).numpy()
    assert np.isfinite(grad).all()  # including the origin, where |z| is not differentiable
    eps = 1e-6
    fd = np.stack(
        [
            (target.numpy_log_prob(z + eps * e) - target.numpy_log_prob(z - eps * e)) / (2 * eps)
            for e in np.eye(2)
        ],
        axis=1,
    )
    np.testing.assert_allclose(grad[1:], fd[1:], rtol=1e-5, atol=1e-6)
    assert target(tf.constant(z, tf.float32)).dtype == tf.float32
