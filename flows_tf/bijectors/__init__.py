"""Bijectors that TensorFlow Probability lacks, plus the conditioner networks of the flows.

Direction convention (TFP's): ``forward`` maps base noise to data (sampling), ``inverse`` maps
data to noise (density evaluation). Every bijector here acts on the last axis
(``forward_min_event_ndims=1``) and returns one log-determinant per event.

- :class:`Planar` (cheap forward; exact numerical inverse), :class:`Radial` (both cheap;
  closed-form inverse), :class:`ActNorm` (per-channel affine) and :class:`AffineNorm`
  (lower-triangular affine; both cheap, both with data-dependent initialisation).
- :class:`OnePassMAF`, :class:`OnePassRealNVP` (:mod:`flows_tf.bijectors.onepass`): TFP's
  ``MaskedAutoregressiveFlow`` and ``RealNVP`` evaluating their conditioner once per density
  evaluation (the log-determinant is cached with the inverse); :func:`stock_twin` rebuilds a
  flow from TFP's stock classes with the same variables, for comparisons.
- :mod:`flows_tf.bijectors.by_degree`: MAF's sequential direction (its sampling, IAF's density)
  in one MADE pass's arithmetic, walking the units in order of degree
  (``OnePassMAF(sequential="by_degree")``) instead of TFP's D full passes; with
  ``"by_degree_implicit"`` its gradient by implicit differentiation, the walk run backwards.
- :class:`RationalQuadraticSpline` (:mod:`flows_tf.bijectors.spline`): TFP's spline with its
  bin found by comparisons instead of a search and gathers, value and log-derivative together.
- :mod:`flows_tf.bijectors.solve`: linear inverses that solve a whole batch in one call
  (:class:`ScaleMatvecLU`, Glow's mixing; :class:`AffineNorm` uses it too).
- :mod:`flows_tf.bijectors.conditioners`: ``tf.Module`` networks for ``tfb.RealNVP`` and
  ``tfb.MaskedAutoregressiveFlow``.
"""

from flows_tf.bijectors.actnorm import ActNorm
from flows_tf.bijectors.affinenorm import AffineNorm
from flows_tf.bijectors.onepass import OnePassMAF, OnePassRealNVP, stock_twin
from flows_tf.bijectors.planar import Planar, planar_u_hat
from flows_tf.bijectors.radial import Radial
from flows_tf.bijectors.solve import ScaleMatvecLU
from flows_tf.bijectors.spline import RationalQuadraticSpline

__all__ = [
    "ActNorm",
    "AffineNorm",
    "OnePassMAF",
    "OnePassRealNVP",
    "Planar",
    "Radial",
    "RationalQuadraticSpline",
    "ScaleMatvecLU",
    "planar_u_hat",
    "stock_twin",
]
