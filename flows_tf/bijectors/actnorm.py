"""Activation normalisation (Kingma and Dhariwal, 2018) with data-dependent initialisation."""

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["ActNorm"]


class ActNorm(tfb.Bijector):
    """Per-channel affine map whose parameters are initialised from a batch of data.

    Forward (noise to data): ``y = x exp(log_scale) + shift`` over the last axis (channels);
    ``log|det J| = sum(log_scale)`` per event of one channel vector, so on images
    (event ``[H, W, C]``) TFP sums it over pixels. Both directions are cheap.

    :meth:`initialize` sets ``shift`` and ``log_scale`` so that the inverse (data to noise)
    maps a batch to zero mean and unit variance per channel, once: a non-trainable flag,
    saved with checkpoints, records it so a restored model is not re-initialised.

    Args:
      channels: Python int, the size of the last axis.
      dtype: TF float dtype of the variables.
      name: Python str.

    Example:
      >>> an = ActNorm(3)
      >>> an.initialize(tf.random.normal([100, 3]) * 5.0 + 2.0)
      True
      >>> z = an.inverse(tf.ones([4, 3]))

    References:
      Diederik P. Kingma and Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. arXiv:1807.03039.
    """

    def __init__(
        self,
        channels: int,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "actnorm",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._channels = int(channels)
            self.shift = tf.Variable(tf.zeros([channels], dtype), name="shift")
            self.log_scale = tf.Variable(tf.zeros([channels], dtype), name="log_scale")
            self.initialized = tf.Variable(False, trainable=False, name="initialized")
            super().__init__(
                forward_min_event_ndims=1,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name,
            )

    def initialize(self, x: tf.Tensor, force: bool = False) -> bool:
        """Data-dependent initialisation from data-side inputs ``x`` of shape (..., channels).

        Runs eagerly (not inside ``tf.function``); call it before training starts.

        Returns True when the parameters were set, False if already initialised.
        """
        if bool(self.initialized.numpy()) and not force:
            return False
        x = tf.reshape(tf.convert_to_tensor(x, self.shift.dtype), [-1, self._channels])
        mean, var = tf.nn.moments(x, axes=[0])
        self.shift.assign(mean)
        self.log_scale.assign(0.5 * tf.math.log(var + tf.constant(1e-6, var.dtype)))
        self.initialized.assign(True)
        return True

    def _get_parameterization(self) -> int:
        # The variables are made in __init__, so equal constructor arguments do not mean equal
        # maps: without this, TFP would share one cache between two flows' layers.
        return id(self)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        return x * tf.exp(self.log_scale) + self.shift

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        return (y - self.shift) * tf.exp(-self.log_scale)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(self.log_scale)
