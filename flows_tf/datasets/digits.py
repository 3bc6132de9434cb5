"""scikit-learn's 8x8 digits, dequantized and optionally logit-transformed; pixel-space accounting.

Pixels take the 17 levels 0..16. Uniform dequantization gives p = v + u, u ~ U[0, 1), so the
pixel space is [0, 17)^64. The model sees

    z = p / 17                                   (``logit: false``)
    z = logit(alpha + (1 - 2 alpha) p / 17)      (``logit: true``)

so a model density q(z) gives the pixel-space log-likelihood

    log p(p) = log q(z) + sum_i log |dz_i / dp_i|,
    dz/dp = 1/17  or  (1 - 2 alpha) / (17 y (1 - y)), y = sigmoid(z),

and bits/dim = -log p(p) / (64 ln 2). The dequantization noise is drawn once per split from the
seed, so a prepared split is a fixed array; maximum-likelihood training redraws the training
split's noise at every step by default (:class:`flows_tf.objectives.MaximumLikelihood`), so
a flow cannot fit the fixed noise of its ~1,100 training images.
"""

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "LEVELS",
    "IMAGE_SHAPE",
    "load_digits_splits",
    "pixel_space_info",
    "log_dz_dpixel",
    "to_model_space",
    "pixel_loglik",
    "bits_per_dim",
]

LEVELS = 17
IMAGE_SHAPE = (8, 8, 1)


def pixel_space_info(logit: bool, alpha: float) -> dict:
    """The ``pixel_space`` record of a prepared split: what maps pixels to model space."""
    return {
        "levels": LEVELS,
        "image_shape": list(IMAGE_SHAPE),
        "dequantization": "uniform",
        "logit": bool(logit),
        "alpha": float(alpha) if logit else None,
    }


def to_model_space(
    pixels: "np.ndarray | tf.Tensor", logit: bool, alpha: float, xp: ModuleType = np
) -> "np.ndarray | tf.Tensor":
    """Map dequantized pixels p in [0, 17) to model space z (see the module docstring).

    ``xp`` is the array module whose ``log`` and ``log1p`` are used: ``numpy``, or
    ``tf.math`` to dequantize inside a compiled training step.
    """
    scaled = pixels / LEVELS
    if not logit:
        return scaled
    y = alpha + (1.0 - 2.0 * alpha) * scaled
    return xp.log(y) - xp.log1p(-y)


def to_pixel_space(x_model: np.ndarray, pixel_space: dict) -> np.ndarray:
    """Inverse of :func:`to_model_space`: p = L (sigmoid(z) - alpha) / (1 - 2 alpha), or p = L z."""
    scaled = np.asarray(x_model, dtype=np.float64)
    if pixel_space.get("logit"):
        alpha = pixel_space["alpha"]
        scaled = (np.exp(-np.logaddexp(0.0, -scaled)) - alpha) / (1.0 - 2.0 * alpha)
    return scaled * pixel_space["levels"]


def log_dz_dpixel(x_model: np.ndarray, pixel_space: dict) -> np.ndarray:
    """sum_i log |dz_i / dp_i| per example, for model-space points x_model (N, D)."""
    x_model = np.asarray(x_model, dtype=np.float64)
    levels = pixel_space["levels"]
    if not pixel_space.get("logit"):
        return np.full(len(x_model), -x_model.shape[1] * np.log(levels))
    alpha = pixel_space["alpha"]
    # log y (1 - y) with y = sigmoid(z), written stably: -softplus(-z) - softplus(z)
    log_y1y = -np.logaddexp(0.0, -x_model) - np.logaddexp(0.0, x_model)
    per_dim = np.log1p(-2.0 * alpha) - np.log(levels) - log_y1y
    return per_dim.sum(axis=1)


def load_digits_splits(
    seed: int, *, logit: bool, alpha: float, val_fraction: float, test_fraction: float
) -> dict:
    """Train/val/test model-space arrays (N, 64) of the digits, split and dequantized by seed."""
    from sklearn.datasets import load_digits

    from flows_tf.datasets.splits import rng_for, split_rows

    if logit and not 0.0 < alpha < 0.5:
        raise ValueError(f"digits: alpha must be in (0, 0.5) with logit, got {alpha}")
    values = load_digits().data.astype(np.float64)  # (1797, 64), integers 0..16
    parts = split_rows(values, seed, "digits", val_fraction, test_fraction)
    out = {}
    for split, v in parts.items():
        pixels = v + rng_for(seed, "digits", f"dequantize/{split}").random(v.shape)
        out[split] = to_model_space(pixels, logit, alpha)
    return out


def pixel_loglik(meta: dict, x_model: ArrayLike, loglik_model: ArrayLike) -> np.ndarray:
    """Per-example log-likelihoods in pixel space: log p(p) = log q(z) + sum_i log|dz_i/dp_i|.

    Args:
        meta: a prepared data set's meta (``read_meta``); without ``pixel_space`` (not an image
            data set) the log-likelihoods are returned unchanged.
        x_model: (N, D) model-space points the log-likelihoods were computed at.
        loglik_model: (N,) model-space log-likelihoods, nats.

    Example:
        >>> meta = {"pixel_space": pixel_space_info(False, 0.0)}
        >>> float(pixel_loglik(meta, np.full((1, 64), 0.5), np.zeros(1))[0] / -64)  # log 17
        2.833213344056216
    """
    loglik_model = np.asarray(loglik_model, dtype=np.float64)
    pixel_space = meta.get("pixel_space")
    if pixel_space is None:
        return loglik_model.copy()
    x_model = np.asarray(x_model, dtype=np.float64)
    if x_model.ndim != 2 or loglik_model.shape != (len(x_model),):
        raise ValueError(
            f"pixel_loglik: x_model must be (N, D) and loglik_model (N,), got "
            f"{x_model.shape} and {loglik_model.shape}"
        )
    return loglik_model + log_dz_dpixel(x_model, pixel_space)


def bits_per_dim(meta: dict, loglik_pixel: ArrayLike) -> np.ndarray | float:
    """-log p / (D ln 2): D pixels of an image data set (``pixel_space``), else ``meta['dim']``."""
    pixel_space = meta.get("pixel_space")
    dim = int(np.prod(pixel_space["image_shape"])) if pixel_space else int(meta["dim"])
    out = -np.asarray(loglik_pixel, dtype=np.float64) / (dim * np.log(2.0))
    return float(out) if out.ndim == 0 else out
