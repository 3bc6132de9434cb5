"""Full affine normalisation: a learnable ``x = mu + L z`` started at the data's Gaussian fit."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability import bijectors as tfb

from flows_tf.bijectors.solve import solve_rows

__all__ = ["AffineNorm"]

# Jitter added to the covariance before its Cholesky factor, as ActNorm floors its variance.
_JITTER = 1e-6


class AffineNorm(tfb.Bijector):
    """Affine map with a lower-triangular scale whose parameters are initialised from data.

    Forward (noise to data): ``y = L x + mu`` with ``L`` lower-triangular, positive diagonal
    (``tfb.FillScaleTriL`` with an ``exp`` diagonal); ``log|det J| = sum_i log L_ii``, constant.
    Both directions are cheap (a matvec; one triangular solve for the inverse's whole batch).

    :meth:`initialize` sets ``mu`` to the batch mean and ``L`` to the Cholesky factor of its
    covariance, so the inverse whitens the batch and a standard-normal base pushed through this
    bijector alone is the maximum-likelihood Gaussian fit. A non-trainable flag, saved with
    checkpoints, records it so a restored model is not re-initialised. Before initialisation it
    is the identity. This is ActNorm with a full instead of a diagonal scale.

    Args:
      d: Python int, the event size D.
      dtype: TF float dtype of the variables.
      name: Python str.

    Example:
      >>> an = AffineNorm(2)
      >>> an.initialize(tf.random.normal([500, 2]) @ [[2.0, 1.0], [0.0, 1.0]] + 3.0)
      True
      >>> z = an.inverse(tf.ones([4, 2]))

    References:
      George Papamakarios, Theo Pavlakou and Iain Murray. Masked Autoregressive Flow for
      Density Estimation. NeurIPS 2017. arXiv:1705.07057 (the Gaussian baseline).
      Diederik P. Kingma and Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. arXiv:1807.03039 (data-dependent initialisation).
    """

    def __init__(
        self,
        d: int,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "affine_norm",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._d = int(d)
            self.shift = tf.Variable(tf.zeros([d], dtype), name="shift")
            self.scale_tril = tfp.util.TransformedVariable(
                tf.eye(d, dtype=dtype),
                tfb.FillScaleTriL(diag_bijector=tfb.Exp(), diag_shift=None),
                name="scale_tril",
            )
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
        """Data-dependent initialisation from data-side inputs ``x`` of shape (N, D), N > D.

        ``mu = mean(x)``, ``L = chol(cov(x) + 1e-6 I)`` (moments in float64). Runs eagerly;
        call it before training starts. Returns True when the parameters were set, False if
        already initialised.
        """
        if bool(self.initialized.numpy()) and not force:
            return False
        x = tf.reshape(tf.cast(x, tf.float64), [-1, self._d])
        n = int(x.shape[0])
        if n <= self._d:
            raise ValueError(
                f"AffineNorm.initialize needs more rows than dimensions to fit a full "
                f"covariance: got a batch of N={n} rows for D={self._d}; pass N > D rows "
                f"(or use a diagonal data affine)"
            )
        mean = tf.reduce_mean(x, axis=0)
        centred = x - mean
        cov = tf.matmul(centred, centred, transpose_a=True) / n
        chol = tf.linalg.cholesky(cov + _JITTER * tf.eye(self._d, dtype=tf.float64))
        self.shift.assign(tf.cast(mean, self.shift.dtype))
        self.scale_tril.assign(tf.cast(chol, self.shift.dtype))
        self.initialized.assign(True)
        return True

    def _operator(self) -> tf.linalg.LinearOperatorLowerTriangular:
        return tf.linalg.LinearOperatorLowerTriangular(tf.convert_to_tensor(self.scale_tril))

    def _get_parameterization(self) -> int:
        # The variables are made in __init__, so equal constructor arguments do not mean equal
        # maps: without this, TFP would share one cache between two flows' layers.
        return id(self)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        return self._operator().matvec(x) + self.shift

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        scale = tf.convert_to_tensor(self.scale_tril)
        return solve_rows(lambda rhs: tf.linalg.triangular_solve(scale, rhs), y - self.shift)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        diag = tf.linalg.diag_part(tf.convert_to_tensor(self.scale_tril))
        return tf.reduce_sum(tf.math.log(diag))
