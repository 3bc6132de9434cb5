"""Small conditioner networks (plain ``tf.Module``s) for coupling bijectors.

Variables are created eagerly in ``__init__`` with known shapes, so a flow's
``trainable_variables`` and ``tf.train.Checkpoint`` work right after it is built. The last
layer starts at zero, so every coupling layer starts as the identity.
"""

import math
from collections.abc import Callable

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from flows_tf.bijectors.spline import RationalQuadraticSpline

__all__ = [
    "MLP",
    "ConvNet",
    "AffineCoupling",
    "ShiftCoupling",
    "SplineCoupling",
    "MADEAffine",
    "SHIFT_SIDES",
]

SHIFT_SIDES = ("data", "noise")  # where MADEAffine's shift is learned, see its docstring


def _glorot(shape: list[int], dtype: tf.DType, fan_in: int, fan_out: int) -> tf.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return tf.random.uniform(shape, -limit, limit, dtype=dtype)


class MLP(tf.Module):
    """ReLU multilayer perceptron ``R^{n_in} -> R^{n_out}`` on the last axis; zero last layer.

    Args:
      n_in: Python int, input width.
      hidden_units: list of Python ints.
      n_out: Python int, output width.
      dtype: TF float dtype.
    """

    def __init__(
        self,
        n_in: int,
        hidden_units: list[int],
        n_out: int,
        dtype: tf.DType = tf.float32,
        name: str = "mlp",
    ) -> None:
        super().__init__(name=name)
        sizes = [n_in, *hidden_units]
        self.kernels, self.biases = [], []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            self.kernels.append(tf.Variable(_glorot([a, b], dtype, a, b), name=f"kernel_{i}"))
            self.biases.append(tf.Variable(tf.zeros([b], dtype), name=f"bias_{i}"))
        self.out_kernel = tf.Variable(tf.zeros([sizes[-1], n_out], dtype), name="out_kernel")
        self.out_bias = tf.Variable(tf.zeros([n_out], dtype), name="out_bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            x = tf.nn.relu(tf.tensordot(x, kernel, [[-1], [0]]) + bias)
        return tf.tensordot(x, self.out_kernel, [[-1], [0]]) + self.out_bias


class ConvNet(tf.Module):
    """3x3 ReLU convolutions ``[..., H, W, c_in] -> [..., H, W, c_out]``; zero last layer.

    Args:
      c_in: Python int, input channels.
      hidden_units: list of Python ints, channels of the hidden convolutions.
      c_out: Python int, output channels.
      dtype: TF float dtype.
    """

    def __init__(
        self,
        c_in: int,
        hidden_units: list[int],
        c_out: int,
        dtype: tf.DType = tf.float32,
        name: str = "convnet",
    ) -> None:
        super().__init__(name=name)
        sizes = [c_in, *hidden_units]
        self.kernels, self.biases = [], []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            kernel = _glorot([3, 3, a, b], dtype, 9 * a, 9 * b)
            self.kernels.append(tf.Variable(kernel, name=f"kernel_{i}"))
            self.biases.append(tf.Variable(tf.zeros([b], dtype), name=f"bias_{i}"))
        self.out_kernel = tf.Variable(tf.zeros([3, 3, sizes[-1], c_out], dtype), name="out_kernel")
        self.out_bias = tf.Variable(tf.zeros([c_out], dtype), name="out_bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        h = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            h = tf.nn.relu(tf.nn.conv2d(h, kernel, 1, "SAME") + bias)
        h = tf.nn.conv2d(h, self.out_kernel, 1, "SAME") + self.out_bias
        return tf.reshape(h, tf.concat([shape[:-1], tf.shape(h)[-1:]], 0))


class AffineCoupling(tf.Module):
    """``bijector_fn`` for ``tfb.RealNVP``: ``x1 -> x1 exp(s(x0)) + t(x0)``, bounded ``s``.

    The log-scale is ``bound * tanh(raw / bound)``, so a coupling layer can never scale by more
    than ``exp(bound)``, which keeps training from overflowing to NaN.
    """

    def __init__(
        self, net: Callable, log_scale_bound: float = 3.0, name: str = "affine_coupling"
    ) -> None:
        super().__init__(name=name)
        self.net = net
        self.log_scale_bound = log_scale_bound

    def __call__(self, x0: tf.Tensor, output_units: int, **kwargs) -> tfb.Bijector:
        shift, raw = tf.split(self.net(x0), 2, axis=-1)
        bound = tf.constant(self.log_scale_bound, raw.dtype)
        log_scale = bound * tf.tanh(raw / bound)
        return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)])


class ShiftCoupling(tf.Module):
    """``bijector_fn`` for ``tfb.RealNVP``: additive coupling ``x1 -> x1 + t(x0)`` (NICE)."""

    def __init__(self, net: Callable, name: str = "shift_coupling") -> None:
        super().__init__(name=name)
        self.net = net

    def __call__(self, x0: tf.Tensor, output_units: int, **kwargs) -> tfb.Bijector:
        return tfb.Shift(self.net(x0))


class SplineCoupling(tf.Module):
    """``bijector_fn`` for ``tfb.RealNVP``: a rational-quadratic spline of ``x1`` given ``x0``.

    The spline lives on ``[-tail_bound, tail_bound]`` (identity outside), with ``num_bins``
    bins; ``net`` must output ``output_units * (3 * num_bins - 1)`` values. ``spline``: the
    bijector class, :class:`~flows_tf.bijectors.spline.RationalQuadraticSpline` or TFP's
    ``tfb.RationalQuadraticSpline`` (the same map and signature).
    """

    def __init__(
        self,
        net: Callable,
        num_bins: int,
        tail_bound: float,
        min_bin: float = 1e-3,
        min_slope: float = 1e-3,
        spline: type[tfb.Bijector] = RationalQuadraticSpline,
        name: str = "spline_coupling",
    ) -> None:
        super().__init__(name=name)
        self.net = net
        self.spline = spline
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.min_bin = min_bin
        self.min_slope = min_slope

    def with_spline(self, spline: type[tfb.Bijector]) -> "SplineCoupling":
        """The same coupling (same network and variables) with another spline class."""
        return SplineCoupling(
            self.net, self.num_bins, self.tail_bound, self.min_bin, self.min_slope,
            spline=spline, name=self.name,
        )  # fmt: skip

    def __call__(self, x0: tf.Tensor, output_units: int, **kwargs) -> tfb.Bijector:
        k = self.num_bins
        params = self.net(x0)
        shape = tf.concat([tf.shape(params)[:-1], [output_units, 3 * k - 1]], 0)
        params = tf.reshape(params, shape)
        raw_w, raw_h, raw_s = tf.split(params, [k, k, k - 1], axis=-1)
        width = 2.0 * self.tail_bound

        def bins(raw: tf.Tensor) -> tf.Tensor:
            return tf.math.softmax(raw, axis=-1) * (width - k * self.min_bin) + self.min_bin

        # softplus(raw + log(e - 1)) = 1 at raw = 0: the zero-initialised net gives the identity.
        offset = math.log(math.expm1(1.0))
        slopes = tf.math.softplus(raw_s + offset) * (1.0 - self.min_slope) + self.min_slope
        return self.spline(
            bin_widths=bins(raw_w),
            bin_heights=bins(raw_h),
            knot_slopes=slopes,
            range_min=-self.tail_bound,
        )


class MADEAffine(tf.Module):
    """``shift_and_log_scale_fn`` for ``tfb.MaskedAutoregressiveFlow`` with a bounded log-scale.

    The MADE gives ``(c, r)`` per dimension; the log-scale is ``s = bound tanh(r / bound)``.
    ``shift_side="data"`` (TFP's and the MAF paper's form) maps ``x = z exp(s) + c``: the
    shift is learned in data units. ``"noise"`` maps ``x = (z + c) exp(s)``, i.e.
    ``z = x exp(-s) - c`` (zuko's and nflows' form): the shift is learned in noise units,
    passed to TFP as ``shift = c exp(s)``. Both start at the identity from ``c = r = 0``.

    Wraps a ``tfb.AutoregressiveNetwork`` with ``params=2``; as a ``tf.Module`` attribute of
    the bijector it keeps the network's variables tracked (a closure would hide them).
    """

    def __init__(
        self,
        made: tfb.AutoregressiveNetwork,
        log_scale_bound: float = 3.0,
        shift_side: str = "data",
        name: str = "made_affine",
    ) -> None:
        super().__init__(name=name)
        if shift_side not in SHIFT_SIDES:
            raise ValueError(f"shift_side must be one of {SHIFT_SIDES}, got {shift_side!r}")
        self.made = made
        self.log_scale_bound = log_scale_bound
        self.shift_side = shift_side

    def __call__(self, x: tf.Tensor, **kwargs) -> tuple[tf.Tensor, tf.Tensor]:
        return self.shift_and_log_scale(*tf.unstack(self.made(x, **kwargs), num=2, axis=-1))

    def shift_and_log_scale(self, c: tf.Tensor, raw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """TFP's ``(shift, log_scale)`` from the MADE's two outputs ``(c, r)``."""
        bound = tf.constant(self.log_scale_bound, raw.dtype)
        log_scale = bound * tf.tanh(raw / bound)
        shift = c * tf.exp(log_scale) if self.shift_side == "noise" else c
        return shift, log_scale
