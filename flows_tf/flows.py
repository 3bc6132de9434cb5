"""Registry of normalizing flows: flow name -> builder of a ``tfd.TransformedDistribution``.

Every flow pushes a standard-normal base through a bijector whose ``forward`` maps noise to
data (TFP's direction); ``log_prob(x)`` runs the inverse. Trainable variables exist as soon as
a flow is built, so ``trainable_variables`` and ``tf.train.Checkpoint`` work at once. Adding a
flow is one builder plus one ``FLOWS`` entry; its keyword arguments are its hyperparameters.
Autoregressive and coupling layers are TFP's, in the one-pass subclasses of
:mod:`flows_tf.bijectors.onepass` (same maps and values; each conditioner network runs once per
``log_prob`` instead of twice).

Every flow starts at the identity map (conditioner output layers zero, so shifts, log-scales
and spline parameters give the identity; planar ``u = 0`` with ``m(0) = 0``; radial
``beta = 0``) behind a learnable affine layer on its data side (``data_affine``), which
:func:`initialize` sets from a batch of data: untrained, every flow is the Gaussian baseline's
fit and training starts from there. That layer's log-determinant is part of ``log_prob``.

A builder is called as ``builder(d, dtype, **hparams)`` with ``d`` the event size D and
``dtype`` the float dtype; every flow but the Gaussian takes ``data_affine``, the data-side
layer that :func:`initialize` sets: ``"full"`` (default; mean and Cholesky factor), ``"diag"``
(ActNorm) or ``"none"``. Each builder's docstring lists its other hyperparameters.

Example:
    >>> x = np.random.randn(100, 2).astype("float32")
    >>> flow = build_flow("glow", [2], num_layers=2, hidden_units=[8, 8])
    >>> initialize(flow, x)  # data affine (mean, Cholesky factor) and Glow's actnorms
    3
    >>> flow.log_prob(x).shape
    TensorShape([100])
"""

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

from flows_tf.bijectors import ActNorm, AffineNorm, OnePassMAF, OnePassRealNVP, Planar, Radial
from flows_tf.bijectors.conditioners import (
    MLP,
    SHIFT_SIDES,
    AffineCoupling,
    ConvNet,
    MADEAffine,
    ShiftCoupling,
    SplineCoupling,
)
from flows_tf.bijectors.onepass import SEQUENTIAL
from flows_tf.bijectors.solve import ScaleMatvecLU

__all__ = ["DATA_AFFINES", "FLOWS", "build_flow", "initialize"]


# --------------------------------------------------------------------------------------------
# Hyperparameter checks


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"hyperparameter {name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _units(name: str, value: Any) -> list[int]:
    if isinstance(value, int | str) or not value:
        raise ValueError(f"hyperparameter {name}={value!r} must be a non-empty list of integers")
    return [_count(name, v) for v in value]


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"hyperparameter {name}={value!r} must be one of {list(options)}")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"hyperparameter {name}={value!r} must be a positive number")
    return float(value)


def _coupling_dims(name: str, d: int) -> int:
    if d < 2:
        raise ValueError(f"flow {name!r} splits the event in two: it needs D >= 2, got D={d}")
    return d // 2


# --------------------------------------------------------------------------------------------
# Shared pieces

DATA_AFFINES = ("full", "diag", "none")


def _data_affine(kind: str, d: int, dtype: tf.DType) -> list[tfb.Bijector]:
    """The learnable affine layer on the data side of a flow, as a (possibly empty) Chain list.

    ``"full"``: :class:`~flows_tf.bijectors.AffineNorm`, ``x = mu + L h`` with ``L``
    lower-triangular, which :func:`initialize` sets to the data's mean and Cholesky factor of
    the covariance, so the untrained flow (every layer the identity) is the Gaussian fit.
    ``"diag"``: :class:`~flows_tf.bijectors.ActNorm`, per-dimension mean and scale. ``"none"``.
    Its log-determinant is part of the flow's, so ``log_prob`` counts it.
    """
    _choice("data_affine", kind, DATA_AFFINES)
    if kind == "full":
        return [AffineNorm(d, dtype=dtype, name="data_affine")]
    if kind == "diag":
        return [ActNorm(d, dtype=dtype, name="data_actnorm")]
    return []


def _lu_mixing(d: int, dtype: tf.DType, name: str) -> ScaleMatvecLU:
    """``ScaleMatvecLU`` initialised at a random rotation (Glow); LU and pivots checkpointed."""
    q, _ = tf.linalg.qr(tf.random.normal([d, d], dtype=dtype))
    lower_upper, perm = tf.linalg.lu(q)
    return ScaleMatvecLU(
        tf.Variable(lower_upper, name=f"{name}_lower_upper"),
        tf.Variable(perm, trainable=False, name=f"{name}_permutation"),
        name=name,
    )


def _order(order: str, d: int, layer: int) -> tfb.Permute:
    """Permutation inserted between autoregressive or coupling layers."""
    if order == "reverse":
        return tfb.Permute(np.arange(d)[::-1], name=f"reverse_{layer}")
    perm = np.random.RandomState(layer).permutation(d)
    return tfb.Permute(perm, name=f"permute_{layer}")


def _interleave(
    layers: list[tfb.Bijector], between: Callable[[int], tfb.Bijector]
) -> list[tfb.Bijector]:
    """``[l0, b(0), l1, b(1), ..., l_{K-1}]`` as a Chain list."""
    out = []
    for i, layer in enumerate(layers):
        if i:
            out.append(between(i))
        out.append(layer)
    return out


def _built_made(
    d: int, dtype: tf.DType, hidden_units: list[int], name: str
) -> tfb.AutoregressiveNetwork:
    """A ``tfb.AutoregressiveNetwork`` (params=2) whose variables exist on return.

    Hidden layers get PyTorch's default initialisation (kernel and bias uniform on
    ``+-1/sqrt(fan_in)``, masked), the output layer zeros, so the MAF/IAF layer starts as the
    identity (shift 0, log-scale 0); zeros satisfy the masks' kernel constraints.

    TFP builds its hidden ``Activation`` layers without a dtype, so they follow Keras' floatx
    and would silently round float64 activations to float32: floatx is set for the build.
    """
    floatx = tf_keras.backend.floatx()
    tf_keras.backend.set_floatx(dtype.name)
    try:
        made = tfb.AutoregressiveNetwork(
            params=2,
            event_shape=[d],
            hidden_units=hidden_units,
            activation="relu",
            kernel_initializer=_hidden_kernel_init,
            dtype=dtype,
            name=name,
        )
        made(tf.zeros([1, d], dtype))
    finally:
        tf_keras.backend.set_floatx(floatx)
    _init_made_biases_and_output(made)
    return made


def _hidden_kernel_init(shape: Sequence[int], dtype: tf.DType | None = None, **kwargs) -> tf.Tensor:
    """PyTorch's ``nn.Linear`` default, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(shape[0])
    return tf.random.uniform(shape, -bound, bound, dtype=dtype)


def _init_made_biases_and_output(made: tfb.AutoregressiveNetwork) -> None:
    """Hidden biases U(+-1/sqrt(fan_in)) (PyTorch's default); output kernel and bias zero."""
    variables = made.trainable_variables
    kernels, biases = variables[0::2], variables[1::2]
    for kernel, bias in zip(kernels[:-1], biases[:-1], strict=True):
        bound = 1.0 / np.sqrt(kernel.shape[0])
        bias.assign(tf.random.uniform(bias.shape, -bound, bound, dtype=bias.dtype))
    kernels[-1].assign(tf.zeros_like(kernels[-1]))
    biases[-1].assign(tf.zeros_like(biases[-1]))


def _made_stack(
    d: int,
    dtype: tf.DType,
    num_layers: int,
    hidden_units: Sequence[int],
    order: str,
    shift_side: str,
    sequential: str,
) -> tuple[list[OnePassMAF], Callable[[int], tfb.Permute]]:
    """MAF layers (each a one-pass ``tfb.MaskedAutoregressiveFlow``), permutations between."""
    num_layers = _count("num_layers", num_layers)
    hidden_units = _units("hidden_units", hidden_units)
    _choice("order", order, ("reverse", "random"))
    _choice("shift_side", shift_side, SHIFT_SIDES)
    _choice("sequential", sequential, SEQUENTIAL)
    layers = []
    for i in range(num_layers):
        made = _built_made(d, dtype, hidden_units, name=f"made_{i}")
        affine = MADEAffine(made, shift_side=shift_side)
        layers.append(
            OnePassMAF(shift_and_log_scale_fn=affine, sequential=sequential, name=f"maf_{i}")
        )
    return layers, (lambda i: _order(order, d, i))


# --------------------------------------------------------------------------------------------
# Builders: (d, dtype, **hparams) -> bijector


def gaussian(d: int, dtype: tf.DType, *, covariance: str = "full") -> tfb.Chain:
    """Gaussian baseline: an affine map of standard normal noise.

    Map: ``x = mu + L z`` with ``L`` lower-triangular with positive diagonal
    (``covariance="full"``, :class:`~flows_tf.bijectors.AffineNorm`) or diagonal (``"diag"``,
    :class:`~flows_tf.bijectors.ActNorm`). :func:`initialize` sets ``mu`` and ``L`` to the
    data's mean and Cholesky factor of the covariance (or standard deviations): the
    maximum-likelihood fit, which training can only refine. Both directions are cheap (a
    triangular solve for ``log_prob``). The same layer is the data-side ``data_affine`` of
    every other flow, so each of them starts at this baseline.

    Args:
      covariance: ``"full"`` (default) or ``"diag"``.

    References:
      The Gaussian baseline of George Papamakarios, Theo Pavlakou and Iain Murray. Masked
      Autoregressive Flow for Density Estimation. NeurIPS 2017. arXiv:1705.07057.
    """
    _choice("covariance", covariance, ("full", "diag"))
    return tfb.Chain(_data_affine(covariance, d, dtype), name="gaussian")


def planar(
    d: int, dtype: tf.DType, *, num_layers: int = 16, data_affine: str = "full"
) -> tfb.Chain:
    """Planar flow: a stack of K planar maps.

    Map: ``x = z + u_hat tanh(w^T z + b)`` per layer, with ``w^T u_hat > -1``
    (:class:`flows_tf.bijectors.Planar`). Sampling (forward) is cheap; ``log_prob`` (inverse)
    solves one monotone scalar equation per layer by bisection and Newton, to float precision.

    Start: ``u = 0`` (so ``u_hat = 0``, the identity; ``w ~ N(0, 0.1^2)``, ``b = 0``) behind a
    full data affine, so the untrained flow is the Gaussian fit. Measured on digits at the
    default budget (seed 0, model space): -65.5 nats with ``"full"``, -76.4 ``"diag"``, -119.4
    ``"none"``; the former ``u ~ N(0, 0.1^2)`` with the unshifted ``m`` scored -123.2.

    Args:
      num_layers: K, number of planar maps (default 16).

    References:
      Danilo Jimenez Rezende and Shakir Mohamed. Variational Inference with Normalizing Flows.
      ICML 2015. arXiv:1505.05770.
    """
    num_layers = _count("num_layers", num_layers)
    layers = []
    for i in range(num_layers):
        w = tf.Variable(tf.random.normal([d], stddev=0.1, dtype=dtype), name=f"planar_{i}_w")
        u = tf.Variable(tf.zeros([d], dtype), name=f"planar_{i}_u")  # u_hat = 0: identity
        b = tf.Variable(tf.zeros([], dtype), name=f"planar_{i}_b")
        layers.append(Planar(w, u, b, name=f"planar_{i}"))
    return tfb.Chain([*_data_affine(data_affine, d, dtype), *layers], name="planar_flow")


def radial(
    d: int, dtype: tf.DType, *, num_layers: int = 16, data_affine: str = "full"
) -> tfb.Chain:
    """Radial flow: a stack of K radial contractions/expansions.

    Map: ``x = z + beta (z - z0) / (alpha + ||z - z0||)`` per layer, ``alpha > 0``,
    ``beta >= -alpha`` (:class:`flows_tf.bijectors.Radial`). Both directions are cheap: the
    inverse is a closed-form quadratic in the radius.

    Start: ``beta = 0`` (the identity; ``z0 ~ N(0, I)``, ``alpha = log 2``) behind a full data
    affine, so the untrained flow is the Gaussian fit. Measured on digits at the default budget
    (seed 0, model space): -65.6 nats with ``"full"``, -84.5 ``"diag"``, -174.9 ``"none"``.

    Args:
      num_layers: K, number of radial maps (default 16).

    References:
      Danilo Jimenez Rezende and Shakir Mohamed. Variational Inference with Normalizing Flows.
      ICML 2015. arXiv:1505.05770.
    """
    num_layers = _count("num_layers", num_layers)
    layers = []
    for i in range(num_layers):
        z0 = tf.Variable(tf.random.normal([d], dtype=dtype), name=f"radial_{i}_z0")
        alpha_raw = tf.Variable(tf.zeros([], dtype), name=f"radial_{i}_alpha_raw")
        # softplus(beta_raw) = alpha = softplus(0): beta starts at 0, the identity.
        beta_raw = tf.Variable(tf.zeros([], dtype), name=f"radial_{i}_beta_raw")
        layers.append(Radial(z0, alpha_raw, beta_raw, name=f"radial_{i}"))
    return tfb.Chain([*_data_affine(data_affine, d, dtype), *layers], name="radial_flow")


def nice(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 4,
    hidden_units: Sequence[int] = (1000, 1000, 1000, 1000, 1000),
    data_affine: str = "full",
) -> tfb.Chain:
    """NICE: additive coupling layers with alternating halves, then a diagonal rescaling.

    Map: per layer ``x_b = z_b + t(z_a)``, ``x_a = z_a`` (halves swap between layers), all
    followed (data to noise) by ``h -> h / s``; ``log|det|`` is constant. Both directions are
    cheap (one network pass per layer). Built on ``tfb.RealNVP`` with a shift-only network.

    Start: zero output layers (every coupling the identity), unit rescaling, full data affine
    (the choice measured best for MAF, planar and radial on digits).

    Args:
      d: event size D >= 2.
      num_layers: number of coupling layers (default 4, as in the paper).
      hidden_units: ReLU hidden widths of each coupling network (default 5 x 1000).

    References:
      Laurent Dinh, David Krueger and Yoshua Bengio. NICE: Non-linear Independent Components
      Estimation. ICLR 2015 workshop. arXiv:1410.8516.
    """
    num_layers = _count("num_layers", num_layers)
    hidden_units = _units("hidden_units", hidden_units)
    k = _coupling_dims("nice", d)
    layers = []
    for i in range(num_layers):
        masked = k if i % 2 == 0 else -k
        net = MLP(k, hidden_units, d - k, dtype=dtype, name=f"nice_net_{i}")
        layers.append(
            OnePassRealNVP(
                num_masked=masked,
                bijector_fn=ShiftCoupling(net),
                is_constant_jacobian=True,
                name=f"additive_coupling_{i}",
            )
        )
    scale = tfp.util.TransformedVariable(tf.ones([d], dtype), tfb.Exp(), name="nice_scale")
    rescale = tfb.ScaleMatvecDiag(scale, name="rescale")
    return tfb.Chain([*_data_affine(data_affine, d, dtype), *layers, rescale], name="nice")


def realnvp(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 5,
    hidden_units: Sequence[int] = (512, 512),
    data_affine: str = "full",
) -> tfb.Chain:
    """RealNVP: affine coupling layers with alternating halves and a bounded log-scale.

    Map: per layer ``x_b = z_b * exp(s(z_a)) + t(z_a)``, ``x_a = z_a``, with
    ``s = 3 tanh(raw / 3)`` so no layer scales by more than ``e^3``. Both directions are cheap
    (one network pass per layer).

    Start: zero output layers (shift 0, log-scale 0: every coupling the identity) behind a full
    data affine (the choice measured best for MAF, planar and radial on digits).

    Args:
      d: event size D >= 2.
      num_layers: number of coupling layers (default 5, RealNVP (5) of the MAF paper).
      hidden_units: ReLU hidden widths of each coupling network (default 2 x 512).

    References:
      Laurent Dinh, Jascha Sohl-Dickstein and Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. arXiv:1605.08803.
    """
    num_layers = _count("num_layers", num_layers)
    hidden_units = _units("hidden_units", hidden_units)
    k = _coupling_dims("realnvp", d)
    layers = []
    for i in range(num_layers):
        masked = k if i % 2 == 0 else -k
        net = MLP(k, hidden_units, 2 * (d - k), dtype=dtype, name=f"realnvp_net_{i}")
        layers.append(
            OnePassRealNVP(
                num_masked=masked, bijector_fn=AffineCoupling(net), name=f"affine_coupling_{i}"
            )
        )
    return tfb.Chain([*_data_affine(data_affine, d, dtype), *layers], name="realnvp")


def _squeeze(image_shape: Sequence[int]) -> tfb.Chain:
    """Space-to-depth as bijectors: forward ``[H/2, W/2, 4C] -> flat H*W*C`` (data layout)."""
    h, w, c = image_shape
    return tfb.Chain(
        [
            tfb.Reshape([h * w * c], [h // 2, 2, w // 2, 2, c]),
            tfb.Transpose(perm=[0, 2, 1, 3, 4]),
            tfb.Reshape([h // 2, w // 2, 2, 2, c], [h // 2, w // 2, 4 * c]),
        ],
        name="squeeze",
    )


def _image_shape(d: int, image_shape: Sequence[int]) -> list[int]:
    shape = _units("image_shape", image_shape)
    if len(shape) != 3 or int(np.prod(shape)) != d or shape[0] % 2 or shape[1] % 2:
        raise ValueError(
            f"hyperparameter image_shape={image_shape!r} must be [H, W, C] with even H and W "
            f"and H*W*C equal to the event size {d}"
        )
    return shape


def glow(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 8,
    hidden_units: Sequence[int] = (512, 512),
    image_shape: Sequence[int] | None = None,
    data_affine: str = "full",
) -> tfb.Chain:
    """Glow: steps of actnorm, invertible mixing and affine coupling.

    Map (data to noise, per step): actnorm ``h -> (h - mu) / sigma`` (data-initialised by
    :func:`initialize`), mixing ``h -> W^{-1} h`` with ``W = P L U`` (TFP's ``ScaleMatvecLU``
    with a one-solve inverse, :class:`~flows_tf.bijectors.ScaleMatvecLU`; over channels, i.e. a
    1x1 convolution, for images), then an affine coupling with bounded log-scale. Vectors use
    dense coupling networks; with ``image_shape=[H, W, C]`` the flat event is squeezed to
    ``[H/2, W/2, 4C]`` and coupling networks are 3x3 convolutions. Both directions are cheap.

    Start: zero output layers (identity couplings), actnorms set from the data, rotations
    (volume-preserving), behind a full data affine on the flat event: untrained, the flow is
    the Gaussian fit up to the actnorms' re-fit of the whitened data.

    Args:
      d: event size D (D >= 2; H*W*C for images).
      num_layers: number of steps K (default 8).
      hidden_units: hidden widths (dense units or conv channels; default 2 x 512).
      image_shape: None for vectors, or [H, W, C] (H, W even) for flattened images.

    References:
      Diederik P. Kingma and Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. arXiv:1807.03039.
    """
    num_layers = _count("num_layers", num_layers)
    hidden_units = _units("hidden_units", hidden_units)
    if image_shape is None:
        channels, k = d, _coupling_dims("glow", d)
    else:
        h, w, c = _image_shape(d, image_shape)
        channels, k = 4 * c, 2 * c
    steps = []
    for i in range(num_layers):
        masked = k if i % 2 == 0 else -k
        if image_shape is None:
            net = MLP(k, hidden_units, 2 * (channels - k), dtype=dtype, name=f"glow_net_{i}")
        else:
            net = ConvNet(k, hidden_units, 2 * (channels - k), dtype=dtype, name=f"glow_net_{i}")
        steps.append(
            tfb.Chain(
                [
                    ActNorm(channels, dtype=dtype, name=f"actnorm_{i}"),
                    _lu_mixing(channels, dtype, name=f"mixing_{i}"),
                    OnePassRealNVP(
                        num_masked=masked,
                        bijector_fn=AffineCoupling(net),
                        name=f"affine_coupling_{i}",
                    ),
                ],
                name=f"glow_step_{i}",
            )
        )
    data_side = _data_affine(data_affine, d, dtype)
    if image_shape is None:
        return tfb.Chain([*data_side, *steps], name="glow")
    unflatten = tfb.Reshape([h // 2, w // 2, 4 * c], [d], name="unflatten")
    return tfb.Chain([*data_side, _squeeze([h, w, c]), *steps, unflatten], name="glow")


def maf(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 5,
    hidden_units: Sequence[int] = (512, 512),
    order: str = "reverse",
    data_affine: str = "full",
    shift_side: str = "data",
    sequential: str = "full_passes",
) -> tfb.Chain:
    """MAF: stacked masked autoregressive flows (MADE networks), orders reversed between layers.

    Map (per layer): ``x_i = z_i exp(s_i(x_{<i})) + t_i(x_{<i})``, bounded ``s``. Density
    (inverse, ``log_prob``) is cheap: one parallel pass; sampling (forward) is sequential, D
    passes per layer. Uses :class:`~flows_tf.bijectors.OnePassMAF` (a
    ``tfb.MaskedAutoregressiveFlow`` running each MADE once per ``log_prob``, not twice) with
    ``tfb.AutoregressiveNetwork``, whose masks are kernel constraints: train it with a tf_keras
    optimizer.

    Start: each MADE's output layer zero (shift 0, log-scale 0: the identity), hidden layers with
    PyTorch's default initialisation, behind a full data affine. Measured after 120 steps
    (model space, mean of seeds 0-2): digits -64.1 nats (TFP's Glorot hidden layers -64.4; on
    seed 0 ``"diag"`` -69.3, ``"none"`` -76.6, the former initialisation -80.7). After 600 steps
    the order reverses on digits (seed 0, pixel space): ``"diag"`` -101.39 against ``"full"``
    -103.60, and zuko's MAF behind the same whitening falls from -101.09 to -106.16, so the
    default config gives MAF and IAF on digits ``"diag"``. On eight_gaussians, near N(0, I)
    already, ``"none"`` does better: MAF(10, 2x128) converged 0.067-0.100 nats from the true
    test log-likelihood against 0.098-0.102 with ``"full"`` (seeds 0-2, two machines).
    Its students failed, so the default config keeps ``"full"`` there (README).
    ``shift_side="noise"`` on digits: ahead of zuko's MAF on 9 of 10 seeds (+0.40 nats
    converged) where ``"data"`` trailed it on 8 of 10 (-0.58); on eight_gaussians level with
    it converged (-0.002 against -0.016), so the default config gives MAF ``"noise"``.

    Args:
      num_layers: number of MADE layers (default 5, MAF (5)).
      hidden_units: hidden widths of each MADE (default 2 x 512, as for tabular data).
      order: ``"reverse"`` (default) or ``"random"`` (fixed, seeded) between layers.
      shift_side: ``"data"`` (default; TFP's and the paper's ``x = z exp(s) + t``) or
        ``"noise"`` (``x = (z + c) exp(s)``, zuko's and nflows' form;
        :class:`~flows_tf.bijectors.conditioners.MADEAffine`).
      sequential: how sampling, the sequential direction, runs: ``"full_passes"`` (default,
        TFP's D MADE passes per layer), ``"by_degree"`` (the same map in one pass's
        arithmetic, :mod:`flows_tf.bijectors.by_degree`) or ``"by_degree_implicit"`` (that
        walk, differentiated implicitly).

    References:
      George Papamakarios, Theo Pavlakou and Iain Murray. Masked Autoregressive Flow for
      Density Estimation. NeurIPS 2017. arXiv:1705.07057.
    """
    layers, between = _made_stack(d, dtype, num_layers, hidden_units, order, shift_side, sequential)
    data_side = _data_affine(data_affine, d, dtype)
    return tfb.Chain([*data_side, *_interleave(layers, between)], name="maf")


def iaf(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 5,
    hidden_units: Sequence[int] = (512, 512),
    order: str = "reverse",
    data_affine: str = "full",
    shift_side: str = "data",
    sequential: str = "full_passes",
) -> tfb.Chain:
    """IAF: the inverse of MAF, ``tfb.Invert(MaskedAutoregressiveFlow)`` per layer.

    Map (per layer): ``x_i = z_i exp(s_i(z_{<i})) + t_i(z_{<i})``, bounded ``s``. Sampling
    (forward) is cheap: one parallel pass; density (inverse) is sequential, D passes per
    layer. Also the student of density distillation.

    Start: as MAF (zero MADE output layers, PyTorch-default hidden layers, full data affine).

    Args:
      num_layers: number of layers (default 5).
      hidden_units: hidden widths of each MADE (default 2 x 512).
      order: ``"reverse"`` (default) or ``"random"`` (fixed, seeded) between layers.
      shift_side: ``"data"`` (default) or ``"noise"``, as for :func:`maf`.
      sequential: how the density, the sequential direction, runs: ``"full_passes"``
        (default, TFP's D MADE passes per layer), ``"by_degree"`` (the same map in one
        pass's arithmetic, :mod:`flows_tf.bijectors.by_degree`) or ``"by_degree_implicit"``
        (that walk, differentiated implicitly: faster to train at large D).

    References:
      Diederik P. Kingma, Tim Salimans, Rafal Jozefowicz, Xi Chen, Ilya Sutskever and Max
      Welling. Improved Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
      arXiv:1606.04934.
    """
    layers, between = _made_stack(d, dtype, num_layers, hidden_units, order, shift_side, sequential)
    layers = [tfb.Invert(layer, name=f"iaf_{i}") for i, layer in enumerate(layers)]
    data_side = _data_affine(data_affine, d, dtype)
    return tfb.Chain([*data_side, *_interleave(layers, between)], name="iaf")


def nsf(
    d: int,
    dtype: tf.DType,
    *,
    num_layers: int = 10,
    hidden_units: Sequence[int] = (256, 256),
    num_bins: int = 8,
    tail_bound: float = 5.0,
    data_affine: str = "full",
) -> tfb.Chain:
    """Neural spline flow: rational-quadratic spline coupling layers with alternating halves.

    Map: per layer ``x_b = RQS(z_b; theta(z_a))``, ``x_a = z_a``: a monotone rational-quadratic
    spline with ``num_bins`` bins on ``[-B, B]`` and the identity outside
    (:class:`~flows_tf.bijectors.RationalQuadraticSpline`: ``tfb.RationalQuadraticSpline``'s map
    with a cheaper bin lookup). Both directions are cheap (the spline inverts in closed form).

    Start: zero output layers give uniform bins and unit knot slopes (the slopes are
    ``softplus(raw + log(e - 1))``), the identity spline, behind a full data affine.

    Args:
      d: event size D >= 2.
      num_layers: number of coupling layers (default 10, as for tabular data in the paper).
      hidden_units: ReLU hidden widths (default 2 x 256).
      num_bins: spline bins K >= 2 (default 8).
      tail_bound: B (default 5: standardised toy data reach +-4; the paper uses 3).

    References:
      Conor Durkan, Artur Bekasov, Iain Murray and George Papamakarios. Neural Spline Flows.
      NeurIPS 2019. arXiv:1906.04032.
    """
    num_layers = _count("num_layers", num_layers)
    hidden_units = _units("hidden_units", hidden_units)
    num_bins = _count("num_bins", num_bins, minimum=2)
    tail_bound = _positive("tail_bound", tail_bound)
    k = _coupling_dims("nsf", d)
    layers = []
    for i in range(num_layers):
        masked = k if i % 2 == 0 else -k
        net = MLP(k, hidden_units, (d - k) * (3 * num_bins - 1), dtype=dtype, name=f"nsf_net_{i}")
        layers.append(
            OnePassRealNVP(
                num_masked=masked,
                bijector_fn=SplineCoupling(net, num_bins, tail_bound),
                name=f"spline_coupling_{i}",
            )
        )
    return tfb.Chain([*_data_affine(data_affine, d, dtype), *layers], name="nsf")


FLOWS = {
    "gaussian": gaussian,
    "planar": planar,
    "radial": radial,
    "nice": nice,
    "realnvp": realnvp,
    "glow": glow,
    "maf": maf,
    "iaf": iaf,
    "nsf": nsf,
}


# --------------------------------------------------------------------------------------------
# Public entry points


def build_flow(
    name: str,
    event_shape: int | Sequence[int],
    dtype: tf.DType | str = tf.float32,
    **hparams,
) -> tfd.TransformedDistribution:
    """Build flow ``name`` on a standard-normal base of shape ``event_shape`` (a 1-D shape).

    Args:
      name: a key of :data:`FLOWS`.
      event_shape: ``[D]`` (or the int D).
      dtype: ``tf.float32`` or ``tf.float64``.
      **hparams: the builder's keyword arguments (see each builder's docstring).

    Returns:
      A ``tfd.TransformedDistribution`` with ``.bijector`` and ``.distribution``.

    Raises:
      ValueError: unknown flow, unknown hyperparameter, or a value out of range.

    Example:
      >>> flow = build_flow("realnvp", [2], tf.float64, num_layers=4, hidden_units=[64, 64])
      >>> flow.sample(5, seed=0).shape
      TensorShape([5, 2])
    """
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; known flows: {sorted(FLOWS)}")
    builder = FLOWS[name]
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("d", "dtype")]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for flow {name!r}; accepted: {accepted}"
        )
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype.name}")
    shape = [event_shape] if isinstance(event_shape, int | np.integer) else list(event_shape)
    if len(shape) != 1 or _count("event_shape", shape[0]) < 1:
        raise ValueError(f"event_shape must be one-dimensional [D], got {event_shape!r}")
    d = int(shape[0])
    with tf.name_scope(name):
        bijector = builder(d, dtype, **hparams)
        base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), [d], name="base")
        return tfd.TransformedDistribution(base, bijector, name=name)


_DATA_INITIALISED = (ActNorm, AffineNorm)


def _inverse_order(bijector: tfb.Bijector) -> Iterator[tfb.Bijector]:
    """Leaf bijectors in the order ``inverse`` applies them (data side first)."""
    # tfb.Chain builds a private non-composite subclass of Composition when it holds variables.
    if isinstance(bijector, tfb.Composition) and "Chain" in type(bijector).__name__:
        for b in bijector.bijectors:
            yield from _inverse_order(b)
    else:
        yield bijector


def initialize(
    flow: tfd.TransformedDistribution, x: np.ndarray | tf.Tensor, force: bool = False
) -> int:
    """Data-dependent initialisation of every actnorm and data affine from the batch ``x``.

    Pushes ``x`` (N, D) through the inverse, layer by layer, and initialises each
    :class:`~flows_tf.bijectors.ActNorm` (per-dimension mean and scale) and
    :class:`~flows_tf.bijectors.AffineNorm` (mean and Cholesky factor of the covariance; needs
    N > D) on its own input. Layers already initialised (for instance restored from a
    checkpoint) are left alone unless ``force``. Every other layer starts at the identity, so
    after this the untrained flow is the Gaussian fit of its data-side affine. A no-op for
    flows without such layers. Returns the number of layers set.
    """
    leaves = list(_inverse_order(flow.bijector))
    if not any(isinstance(b, _DATA_INITIALISED) for b in leaves):
        return 0
    h = tf.convert_to_tensor(x, flow.dtype)
    count = 0
    for b in leaves:
        if isinstance(b, _DATA_INITIALISED):
            count += int(b.initialize(h, force=force))
        h = b.inverse(h)
    return count
