"""Planar flow bijector (Rezende and Mohamed, 2015) with an exact numerical inverse."""

import math

import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability.python.internal import parameter_properties as pp

__all__ = ["Planar", "planar_u_hat"]

# Bisection halves the bracket [c - |w.u| - 1, c + |w.u| + 1]; 40 (float32) or 80 (float64)
# halvings shrink a bracket of width 2e3 below the dtype's resolution, and the Newton steps that
# follow polish the last bits.
_BISECTION_STEPS = {tf.float32: 40, tf.float64: 80}
_NEWTON_STEPS = 3
# softplus(0 + log(e - 1)) = 1, so m(0) = 0: a layer with u = 0 is exactly the identity.
_SOFTPLUS_ONE = math.log(math.expm1(1.0))


def planar_u_hat(w: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """Invertibility reparameterisation u_hat = u + (m(w.u) - w.u) w / ||w||^2.

    With m(a) = -1 + softplus(a + log(e - 1)) this gives w.u_hat = m(w.u) > -1, so the planar
    map with h = tanh is invertible (Rezende and Mohamed 2015, appendix A, whose m(a) =
    -1 + softplus(a) is shifted here so that m(0) = 0 and m'(0) = 1 - 1/e). Hence u = 0 gives
    u_hat = 0 for every w: the layer starts as the identity instead of the contraction
    w.u_hat = -0.31, |u_hat| = 0.31 / ||w|| of the unshifted m. ``w = 0`` leaves u as is.

    Args:
      w: (..., D) tensor.
      u: (..., D) tensor of the same shape.

    Returns:
      u_hat, a (..., D) tensor.
    """
    wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
    m = -1.0 + tf.math.softplus(wu + tf.constant(_SOFTPLUS_ONE, wu.dtype))
    w_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
    return u + (m - wu) * tf.math.divide_no_nan(w, w_sq)


class Planar(tfb.Bijector):
    """Planar flow: a single-hidden-unit residual map along a hyperplane normal.

    Forward (noise to data): ``y = x + u_hat tanh(w^T x + b)``, with ``u_hat`` from
    :func:`planar_u_hat` so that ``w^T u_hat > -1`` and the map is invertible;
    ``log|det J| = log|1 + u_hat^T w tanh'(w^T x + b)|``.

    The forward direction is cheap (one pass). The inverse has no closed form: writing
    ``a = w^T x + b``, the data give ``c = w^T y + b = a + (w^T u_hat) tanh(a)``, strictly
    increasing in ``a`` with the root in ``[c - |w^T u_hat|, c + |w^T u_hat|]``. We solve it by
    bisection plus Newton polishing to float precision, then ``x = y - u_hat tanh(a)``.
    Gradients of the inverse flow through one final Newton step from the (stopped) root, which
    gives the exact implicit-function derivative.

    Args:
      w: (D,) tensor or variable, the hyperplane normal.
      u: (D,) tensor or variable, the raw (unconstrained) direction.
      b: scalar tensor or variable, the offset.
      validate_args: Python bool.
      name: Python str.

    Example:
      >>> bij = Planar(w=tf.Variable([1.0, 0.0]), u=tf.Variable([0.5, 0.5]), b=tf.Variable(0.0))
      >>> x = bij.inverse(bij.forward(tf.ones([3, 2])))

    References:
      Danilo Jimenez Rezende and Shakir Mohamed. Variational Inference with Normalizing Flows.
      ICML 2015. arXiv:1505.05770.
    """

    def __init__(
        self,
        w: tf.Tensor | tf.Variable,
        u: tf.Tensor | tf.Variable,
        b: tf.Tensor | tf.Variable,
        validate_args: bool = False,
        name: str = "planar",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._w = w
            self._u = u
            self._b = b
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: tf.DType) -> dict[str, pp.ParameterProperties]:
        return dict(
            w=pp.ParameterProperties(event_ndims=1),
            u=pp.ParameterProperties(event_ndims=1),
            b=pp.ParameterProperties(event_ndims=0),
        )

    @property
    def w(self) -> tf.Tensor | tf.Variable:
        return self._w

    @property
    def u(self) -> tf.Tensor | tf.Variable:
        return self._u

    @property
    def b(self) -> tf.Tensor | tf.Variable:
        return self._b

    def _params(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        w = tf.convert_to_tensor(self._w)
        u_hat = planar_u_hat(w, tf.convert_to_tensor(self._u))
        return w, u_hat, tf.convert_to_tensor(self._b)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        w, u_hat, b = self._params()
        a = tf.reduce_sum(x * w, axis=-1, keepdims=True) + b
        return x + u_hat * tf.tanh(a)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        w, u_hat, b = self._params()
        a = tf.reduce_sum(x * w, axis=-1) + b
        wu = tf.reduce_sum(w * u_hat, axis=-1)
        dtanh = 1.0 - tf.square(tf.tanh(a))
        return tf.math.log(tf.abs(1.0 + wu * dtanh))

    def _solve(self, c: tf.Tensor, wu: tf.Tensor) -> tf.Tensor:
        """Root of g(a) = a + wu tanh(a) - c, elementwise; g is increasing since wu > -1."""
        c_ = tf.stop_gradient(c)
        wu_ = tf.stop_gradient(wu) * tf.ones_like(c_)
        half = tf.abs(wu_) + 1.0
        lo, hi = c_ - half, c_ + half

        def bisect(_: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor) -> tuple[tf.Tensor, ...]:
            mid = 0.5 * (lo + hi)
            above = mid + wu_ * tf.tanh(mid) - c_ > 0
            return _ + 1, tf.where(above, lo, mid), tf.where(above, mid, hi)

        steps = _BISECTION_STEPS.get(c_.dtype, 80)
        _, lo, hi = tf.while_loop(lambda i, *_: i < steps, bisect, (tf.constant(0), lo, hi))
        a = 0.5 * (lo + hi)
        for _ in range(_NEWTON_STEPS):
            g = a + wu_ * tf.tanh(a) - c_
            dg = 1.0 + wu_ * (1.0 - tf.square(tf.tanh(a)))
            step = tf.math.divide_no_nan(g, dg)
            candidate = a - step
            # Safeguard: keep Newton inside the bracket; otherwise keep the bisection root.
            a = tf.where((candidate >= lo) & (candidate <= hi), candidate, a)
        a = tf.stop_gradient(a)
        # One differentiable Newton step: exact first-order gradients w.r.t. c and wu.
        g = a + wu * tf.tanh(a) - c
        dg = 1.0 + wu * (1.0 - tf.square(tf.tanh(a)))
        return a - tf.math.divide_no_nan(g, dg)

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        w, u_hat, b = self._params()
        c = tf.reduce_sum(y * w, axis=-1, keepdims=True) + b
        wu = tf.reduce_sum(w * u_hat, axis=-1, keepdims=True)
        a = self._solve(c, wu)
        return y - u_hat * tf.tanh(a)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        return -self._forward_log_det_jacobian(self._inverse(y))
