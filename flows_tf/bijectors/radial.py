"""Radial flow bijector (Rezende and Mohamed, 2015) with a closed-form inverse."""

import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability.python.internal import parameter_properties as pp

__all__ = ["Radial"]


class Radial(tfb.Bijector):
    """Radial flow: contraction or expansion around a reference point ``z0``.

    Forward (noise to data): ``y = x + beta h(r) (x - z0)``, ``r = ||x - z0||``,
    ``h(r) = 1 / (alpha + r)``, with ``alpha = softplus(alpha_raw) > 0`` and
    ``beta = -alpha + softplus(beta_raw) >= -alpha`` (invertibility);
    ``log|det J| = (D - 1) log(1 + beta h) + log(1 + beta alpha h^2)``.

    Both directions are cheap. Inverse in closed form: ``s = ||y - z0|| = r (1 + beta h(r))``
    gives ``r^2 + (alpha + beta - s) r - alpha s = 0``, whose positive root is taken in a
    cancellation-free form; then ``x = z0 + (y - z0) / (1 + beta h(r))``.

    Args:
      z0: (D,) tensor or variable, the reference point.
      alpha_raw: scalar tensor or variable, softplus-preimage of alpha.
      beta_raw: scalar tensor or variable, softplus-preimage of beta + alpha.
      validate_args: Python bool.
      name: Python str.

    Example:
      >>> bij = Radial(z0=tf.zeros([2]), alpha_raw=tf.constant(0.5), beta_raw=tf.constant(1.0))
      >>> x = bij.inverse(bij.forward(tf.ones([3, 2])))

    References:
      Danilo Jimenez Rezende and Shakir Mohamed. Variational Inference with Normalizing Flows.
      ICML 2015. arXiv:1505.05770.
    """

    def __init__(
        self,
        z0: tf.Tensor | tf.Variable,
        alpha_raw: tf.Tensor | tf.Variable,
        beta_raw: tf.Tensor | tf.Variable,
        validate_args: bool = False,
        name: str = "radial",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._z0 = z0
            self._alpha_raw = alpha_raw
            self._beta_raw = beta_raw
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: tf.DType) -> dict[str, pp.ParameterProperties]:
        return dict(
            z0=pp.ParameterProperties(event_ndims=1),
            alpha_raw=pp.ParameterProperties(event_ndims=0),
            beta_raw=pp.ParameterProperties(event_ndims=0),
        )

    @property
    def z0(self) -> tf.Tensor | tf.Variable:
        return self._z0

    def alpha_beta(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The constrained (alpha, beta): alpha > 0 and beta >= -alpha."""
        alpha = tf.math.softplus(tf.convert_to_tensor(self._alpha_raw))
        beta = -alpha + tf.math.softplus(tf.convert_to_tensor(self._beta_raw))
        return alpha, beta

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        alpha, beta = self.alpha_beta()
        diff = x - self._z0
        r = tf.norm(diff, axis=-1, keepdims=True)
        return x + beta / (alpha + r) * diff

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        alpha, beta = self.alpha_beta()
        diff = x - self._z0
        r = tf.norm(diff, axis=-1)
        h = 1.0 / (alpha + r)
        d = tf.cast(tf.shape(x)[-1], x.dtype)
        return (d - 1.0) * tf.math.log1p(beta * h) + tf.math.log1p(beta * alpha * tf.square(h))

    def _radius(self, s: tf.Tensor) -> tf.Tensor:
        """Positive root r of r^2 + (alpha + beta - s) r - alpha s = 0."""
        alpha, beta = self.alpha_beta()
        q = alpha + beta - s
        root = tf.sqrt(tf.square(q) + 4.0 * alpha * s)
        safe = tf.where(q >= 0, q + root, tf.ones_like(q))
        return tf.where(q >= 0, 2.0 * alpha * s / safe, 0.5 * (root - q))

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        alpha, beta = self.alpha_beta()
        diff = y - self._z0
        s = tf.norm(diff, axis=-1, keepdims=True)
        r = self._radius(s)
        return self._z0 + diff * (alpha + r) / (alpha + r + beta)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        return -self._forward_log_det_jacobian(self._inverse(y))
