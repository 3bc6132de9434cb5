"""The four 2-D energy targets U1-U4 of Rezende and Mohamed (2015), confined to a box.

Table 1 of the paper, with w1 = sin(2 pi z1 / 4), w2 = 3 exp(-1/2 ((z1 - 1)/0.6)^2),
w3 = 3 sigma((z1 - 1)/0.3), sigma(t) = 1/(1 + e^-t):

    U1(z) = 1/2 ((|z| - 2)/0.4)^2 - log(exp(-1/2 ((z1 - 2)/0.6)^2) + exp(-1/2 ((z1 + 2)/0.6)^2))
    U2(z) = 1/2 ((z2 - w1)/0.4)^2
    U3(z) = -log(exp(-1/2 ((z2 - w1)/0.35)^2) + exp(-1/2 ((z2 - w1 + w2)/0.35)^2))
    U4(z) = -log(exp(-1/2 ((z2 - w1)/0.4)^2) + exp(-1/2 ((z2 - w1 + w3)/0.35)^2))

U2-U4 do not decay along z1, so exp(-U) has no normaliser on the plane. Every target here is
defined on the box [-4, 4]^2 of the paper's figures: exactly exp(-U) inside, and outside a steep
soft wall (a half-Gaussian of width ``WALL_SCALE`` = 0.1 per coordinate beyond the box),

    log p~(z) = -U(z) - 1/2 sum_i (max(|z_i| - 4, 0) / 0.1)^2,

which is finite everywhere, so a flow with a Gaussian base keeps a finite KL. ``log_z`` is the
log normaliser of exactly this p~, by trapezoidal quadrature on a grid covering the box plus
1.5 (15 wall widths) on every side. The wall holds mass: on U2-U4, whose ridges reach the edges
z1 = +-4, it raises log Z above log of the integral of exp(-U) over the box alone by a few
hundredths of a nat, the size of a good fit's KL; :func:`log_z_parts` gives both numbers.

References:
    Rezende, D. J. and Mohamed, S. (2015). Variational Inference with Normalizing Flows.
    ICML. arXiv:1505.05770.
"""

import functools
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import tensorflow as tf

# The potentials run on NumPy arrays and on TF tensors alike (``ops`` holds the functions).
Array: TypeAlias = "np.ndarray | tf.Tensor"

__all__ = ["BOX", "WALL_SCALE", "ENERGY_TARGETS", "EnergyTarget", "log_z_parts", "quadrature_log_z"]

BOX = 4.0
WALL_SCALE = 0.1
_PAD = 1.5
_GRID_N = 1601


def _np_ops() -> SimpleNamespace:
    return SimpleNamespace(
        exp=np.exp,
        log=np.log,
        sin=np.sin,
        sqrt=np.sqrt,
        abs=np.abs,
        maximum=np.maximum,
        logaddexp=np.logaddexp,
        sigmoid=lambda t: np.exp(-np.logaddexp(0.0, -t)),
    )


def _tf_ops() -> SimpleNamespace:
    import tensorflow as tf

    return SimpleNamespace(
        exp=tf.exp,
        log=tf.math.log,
        sin=tf.sin,
        sqrt=tf.sqrt,
        abs=tf.abs,
        maximum=tf.maximum,
        logaddexp=lambda a, b: tf.reduce_logsumexp(tf.stack([a, b], axis=0), axis=0),
        sigmoid=tf.sigmoid,
    )


def _w1(z1: Array, ops: SimpleNamespace) -> Array:
    return ops.sin(2.0 * math.pi * z1 / 4.0)


def _w2(z1: Array, ops: SimpleNamespace) -> Array:
    return 3.0 * ops.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def _w3(z1: Array, ops: SimpleNamespace) -> Array:
    return 3.0 * ops.sigmoid((z1 - 1.0) / 0.3)


def _u1(z1: Array, z2: Array, ops: SimpleNamespace) -> Array:
    # max(r^2, tiny) keeps the gradient of |z| finite at the origin without changing values
    norm = ops.sqrt(ops.maximum(z1**2 + z2**2, 1e-30))
    ring = 0.5 * ((norm - 2.0) / 0.4) ** 2
    return ring - ops.logaddexp(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)


def _u2(z1: Array, z2: Array, ops: SimpleNamespace) -> Array:
    return 0.5 * ((z2 - _w1(z1, ops)) / 0.4) ** 2


def _u3(z1: Array, z2: Array, ops: SimpleNamespace) -> Array:
    w1, w2 = _w1(z1, ops), _w2(z1, ops)
    return -ops.logaddexp(-0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + w2) / 0.35) ** 2)


def _u4(z1: Array, z2: Array, ops: SimpleNamespace) -> Array:
    w1, w3 = _w1(z1, ops), _w3(z1, ops)
    return -ops.logaddexp(-0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + w3) / 0.35) ** 2)


def _wall(z1: Array, z2: Array, ops: SimpleNamespace) -> Array:
    out1 = ops.maximum(ops.abs(z1) - BOX, 0.0) / WALL_SCALE
    out2 = ops.maximum(ops.abs(z2) - BOX, 0.0) / WALL_SCALE
    return 0.5 * (out1**2 + out2**2)


_POTENTIALS = {"u1": _u1, "u2": _u2, "u3": _u3, "u4": _u4}


def quadrature_log_z(
    log_density: Callable[[np.ndarray], np.ndarray], n: int = _GRID_N, pad: float = _PAD
) -> float:
    """log of the trapezoidal integral of exp(log_density) on n x n nodes over [-4-pad, 4+pad]^2."""
    xs = np.linspace(-BOX - pad, BOX + pad, n)
    h = xs[1] - xs[0]
    w = np.full(n, h)
    w[[0, -1]] = h / 2.0
    z1, z2 = np.meshgrid(xs, xs, indexing="ij")
    logp = log_density(np.stack([z1.ravel(), z2.ravel()], axis=1)).reshape(n, n)
    logw = np.log(w)[:, None] + np.log(w)[None, :]
    return float(np.logaddexp.reduce((logp + logw).ravel()))


class EnergyTarget:
    """Unnormalised log-density -U(z) of a Rezende-Mohamed target on the walled box [-4, 4]^2.

    log p~(z) = -U(z) - 1/2 sum_i (max(|z_i| - 4, 0) / 0.1)^2, and p(z) = p~(z) / Z.

    Args:
        name: one of ``u1``, ``u2``, ``u3``, ``u4``.

    Calling it on a tensor of shape (N, 2) (any float dtype) returns the (N,) tensor log p~(z),
    built from TensorFlow ops so gradients flow; ``numpy_log_prob`` is the same in NumPy.
    ``log_z`` (float) is computed by quadrature on first use.

    Example:
        >>> target = EnergyTarget("u2")
        >>> target.numpy_log_prob(np.zeros((1, 2))).round(6).tolist()
        [-0.0]

    References:
        Rezende, D. J. and Mohamed, S. (2015). Variational Inference with Normalizing Flows.
        ICML. arXiv:1505.05770.
    """

    bounds = (-BOX, BOX)

    def __init__(self, name: str):
        if name not in _POTENTIALS:
            raise KeyError(f"unknown energy target {name!r}; known: {sorted(_POTENTIALS)}")
        self.name = name
        self._potential = _POTENTIALS[name]

    def __repr__(self) -> str:
        return f"EnergyTarget({self.name!r})"

    def __call__(self, z: "ArrayLike | tf.Tensor") -> "tf.Tensor":
        """log p~(z) for a tensor z of shape (N, 2), as a TensorFlow tensor of shape (N,)."""
        import tensorflow as tf

        z = tf.convert_to_tensor(z)
        if not z.dtype.is_floating:
            z = tf.cast(z, tf.float32)
        ops = _tf_ops()
        z1, z2 = z[..., 0], z[..., 1]
        return -self._potential(z1, z2, ops) - _wall(z1, z2, ops)

    def potential(self, z: ArrayLike) -> np.ndarray:
        """The paper's U(z) in NumPy (no wall), z of shape (N, 2)."""
        z = np.asarray(z, dtype=np.float64)
        return self._potential(z[..., 0], z[..., 1], _np_ops())

    def numpy_log_prob(self, z: ArrayLike) -> np.ndarray:
        """log p~(z) in NumPy float64, z of shape (N, 2)."""
        z = np.asarray(z, dtype=np.float64)
        ops = _np_ops()
        return -self._potential(z[..., 0], z[..., 1], ops) - _wall(z[..., 0], z[..., 1], ops)

    def log_z_quadrature(self, n: int = _GRID_N, pad: float = _PAD) -> float:
        """log Z by the trapezoidal rule on an n x n grid over [-4 - pad, 4 + pad]^2."""
        return quadrature_log_z(self.numpy_log_prob, n=n, pad=pad)

    @functools.cached_property
    def log_z(self) -> float:
        """log of the integral of p~ over the plane (quadrature, converged to about 1e-6)."""
        return self.log_z_quadrature()


ENERGY_TARGETS = {name: EnergyTarget(name) for name in _POTENTIALS}


def log_z_parts(name: str) -> dict:
    """log Z of a target with the wall and without it, and what the wall adds.

    ``log_z`` normalises p~ = exp(-U - wall) on the plane (the number KL(q || p) uses);
    ``log_z_box = log of the integral of exp(-U) over [-4, 4]^2`` (no wall, nothing outside the
    box); ``wall_nats = log_z - log_z_box = log(1 + mass outside the box / mass inside)``.

    Example:
        >>> parts = log_z_parts("u1")
        >>> parts["wall_nats"] < 1e-3  # U1's ring lies well inside the box
        True
    """
    target = ENERGY_TARGETS[name] if name in ENERGY_TARGETS else EnergyTarget(name)
    box = quadrature_log_z(lambda z: -target.potential(z), pad=0.0)
    return {"log_z": target.log_z, "log_z_box": box, "wall_nats": target.log_z - box}
