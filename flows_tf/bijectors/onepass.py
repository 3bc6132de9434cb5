"""TFP's autoregressive and coupling bijectors with one conditioner pass per density evaluation.

``tfb.MaskedAutoregressiveFlow`` and ``tfb.RealNVP`` compute ``inverse(y)`` and
``inverse_log_det_jacobian(y)`` separately, each running the conditioner network on ``y``, so
``TransformedDistribution.log_prob`` pays for every network twice. The subclasses here build the
inner elementwise bijector once in ``_inverse`` (and, for coupling layers, in ``_forward``),
apply it, and store its log-determinant in TFP's bijector cache attributes for that input. TFP's
``Bijector._call_inverse_log_det_jacobian`` reads ``attrs['ildj']`` before calling
``_inverse_log_det_jacobian``, so a following log-det request for the same tensor is free.
Asked for a log-determinant without a prior ``inverse``, they fall back to the stock single pass.
The maps, their parameters and their values are exactly the stock ones.
"""

from typing import TYPE_CHECKING

import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability.python.bijectors import invert as invert_lib

from flows_tf.bijectors.by_degree import check_by_degree, forward_by_degree, solve_by_degree
from flows_tf.bijectors.conditioners import MADEAffine, SplineCoupling
from flows_tf.bijectors.solve import ScaleMatvecLU

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = ["OnePassMAF", "OnePassRealNVP", "stock_twin", "SEQUENTIAL"]

# how OnePassMAF runs its sequential direction (forward: MAF sampling, IAF density)
SEQUENTIAL = ("full_passes", "by_degree", "by_degree_implicit")

# tfb.Invert(b) returns an instance of this private base class when b holds variables
_INVERT = invert_lib._Invert  # noqa: SLF001


class OnePassMAF(tfb.MaskedAutoregressiveFlow):
    """``tfb.MaskedAutoregressiveFlow`` whose ``inverse`` also caches its log-determinant.

    Map (per element): ``x_i = z_i exp(s_i(x_{<i})) + t_i(x_{<i})``; the inverse
    ``z = (x - t(x)) exp(-s(x))`` and ``log|det dz/dx| = -sum_i s_i(x)`` share one network pass.

    The sequential direction (``forward``) is TFP's D full MADE passes by default;
    ``sequential="by_degree"`` computes the same map with one pass's arithmetic
    (:mod:`flows_tf.bijectors.by_degree`; needs a :class:`MADEAffine` over a left-to-right,
    equal-degree ``tfb.AutoregressiveNetwork``) and caches its log-determinant too;
    ``"by_degree_implicit"`` is the same walk with its gradient by implicit differentiation
    (:func:`~flows_tf.bijectors.by_degree.solve_by_degree`: faster to train at large D, e.g.
    IAF on 64-D digits, slower at D = 2).

    Args: those of ``tfb.MaskedAutoregressiveFlow`` (e.g. ``shift_and_log_scale_fn``, ``name``),
    and ``sequential``: one of :data:`SEQUENTIAL`.

    Example:
      >>> made = tfb.AutoregressiveNetwork(params=2, hidden_units=[16], event_shape=[3])
      >>> bij = OnePassMAF(shift_and_log_scale_fn=made)
      >>> x = tf.random.normal([5, 3])
      >>> z = bij.inverse(x)  # one MADE pass; the ildj below is read from the cache
      >>> bij.inverse_log_det_jacobian(x, event_ndims=1).shape
      TensorShape([5])

    References:
      George Papamakarios, Theo Pavlakou and Iain Murray. Masked Autoregressive Flow for Density
      Estimation. NeurIPS 2017. arXiv:1705.07057.
    """

    def __init__(self, *args, sequential: str = "full_passes", **kwargs) -> None:
        if sequential not in SEQUENTIAL:
            raise ValueError(f"sequential must be one of {SEQUENTIAL}, got {sequential!r}")
        super().__init__(*args, **kwargs)
        if sequential != "full_passes":
            if not isinstance(self._shift_and_log_scale_fn, MADEAffine):
                raise ValueError(
                    f"sequential={sequential!r} needs a MADEAffine shift_and_log_scale_fn"
                )
            check_by_degree(self._shift_and_log_scale_fn.made)
        self._sequential = sequential

    def _forward(self, x: tf.Tensor, **kwargs) -> tf.Tensor:
        if self._sequential == "full_passes":
            return super()._forward(x, **kwargs)
        walk = solve_by_degree if self._sequential == "by_degree_implicit" else forward_by_degree
        y, log_det = walk(self._shift_and_log_scale_fn, x)
        self._cache.forward_attributes(x, **kwargs)["ildj"] = -log_det
        return y

    def _inverse(self, y: tf.Tensor, **kwargs) -> tf.Tensor:
        bijector = self._bijector_fn(y, **kwargs)
        attrs = self._cache.inverse_attributes(y, **kwargs)
        attrs["ildj"] = bijector.inverse_log_det_jacobian(y, event_ndims=self._event_ndims)
        return bijector.inverse(y)


class OnePassRealNVP(tfb.RealNVP):
    """``tfb.RealNVP`` whose ``inverse`` and ``forward`` also cache their log-determinants.

    Map: ``x_b = g(z_b; theta(z_a))``, ``x_a = z_a`` with an elementwise bijector ``g`` from
    ``bijector_fn`` (affine, shift-only or spline); each direction evaluates ``theta`` once for
    both the transformed values and the log-determinant.

    Args: those of ``tfb.RealNVP`` (``num_masked``, ``bijector_fn``, ...).

    Example:
      >>> from flows_tf.bijectors.conditioners import MLP, AffineCoupling
      >>> bij = OnePassRealNVP(num_masked=1, bijector_fn=AffineCoupling(MLP(1, [8], 2)))
      >>> x = tf.random.normal([5, 2])
      >>> bij.inverse_log_det_jacobian(x, event_ndims=1).shape
      TensorShape([5])

    References:
      Laurent Dinh, Jascha Sohl-Dickstein and Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. arXiv:1605.08803.
    """

    def _split(self, v: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        self._cache_input_depth(v)
        v0, v1 = v[..., : self._masked_size], v[..., self._masked_size :]
        return (v1, v0) if self._reverse_mask else (v0, v1)

    def _join(self, kept: tf.Tensor, moved: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
        pieces = [moved, kept] if self._reverse_mask else [kept, moved]
        out = tf.concat(pieces, axis=-1)
        # Some inner bijectors (splines) lose the static event size in graph mode; the next
        # coupling layer needs it, and a coupling layer never changes its input's shape.
        out.set_shape(like.shape)
        return out

    def _inverse(self, y: tf.Tensor, **kwargs) -> tf.Tensor:
        y0, y1 = self._split(y)
        bijector = self._bijector_fn(y0, self._bijector_input_units(), **kwargs)
        x1 = bijector.inverse(y1)  # first: an inner bijector may cache its log-det with it
        attrs = self._cache.inverse_attributes(y, **kwargs)
        attrs["ildj"] = bijector.inverse_log_det_jacobian(y1, event_ndims=1)
        return self._join(y0, x1, like=y)

    def _forward(self, x: tf.Tensor, **kwargs) -> tf.Tensor:
        x0, x1 = self._split(x)
        bijector = self._bijector_fn(x0, self._bijector_input_units(), **kwargs)
        y1 = bijector.forward(x1)
        attrs = self._cache.forward_attributes(x, **kwargs)
        attrs["ildj"] = -bijector.forward_log_det_jacobian(x1, event_ndims=1)
        return self._join(x0, y1, like=x)


def _stock_bijector(bijector: tfb.Bijector) -> tfb.Bijector:
    if isinstance(bijector, OnePassMAF):
        return tfb.MaskedAutoregressiveFlow(**bijector.parameters)
    if isinstance(bijector, OnePassRealNVP):
        parameters = dict(bijector.parameters)
        fn = parameters["bijector_fn"]
        if isinstance(fn, SplineCoupling):
            parameters["bijector_fn"] = fn.with_spline(tfb.RationalQuadraticSpline)
        return tfb.RealNVP(**parameters)
    if isinstance(bijector, ScaleMatvecLU):
        return tfb.ScaleMatvecLU(**bijector.parameters)
    if isinstance(bijector, _INVERT):
        return tfb.Invert(_stock_bijector(bijector.bijector), name=bijector.name)
    if isinstance(bijector, tfb.Composition) and "Chain" in type(bijector).__name__:
        return tfb.Chain([_stock_bijector(b) for b in bijector.bijectors], name=bijector.name)
    return bijector


def stock_twin(flow: "tfd.TransformedDistribution") -> "tfd.TransformedDistribution":
    """The same flow (same variables, same maps) built from TFP's stock bijector classes.

    Every :class:`OnePassMAF` becomes ``tfb.MaskedAutoregressiveFlow``, every
    :class:`OnePassRealNVP` ``tfb.RealNVP`` (its splines TFP's ``RationalQuadraticSpline``) and
    every :class:`~flows_tf.bijectors.solve.ScaleMatvecLU` TFP's, with the same constructor
    arguments, so the two flows compute the same densities up to rounding; only the number of
    conditioner passes and the ops differ. Used to compare speed and values against TFP.

    Args:
      flow: a ``tfd.TransformedDistribution`` (e.g. from ``flows_tf.build_flow``).

    Returns:
      A ``tfd.TransformedDistribution`` sharing ``flow``'s base distribution and variables.
    """
    from tensorflow_probability import distributions as tfd

    return tfd.TransformedDistribution(
        flow.distribution, _stock_bijector(flow.bijector), name=flow.name
    )
