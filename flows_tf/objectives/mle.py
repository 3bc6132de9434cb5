"""Maximum likelihood on data: the density objective of every flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from flows_tf import evaluate, flows
from flows_tf.datasets import digits
from flows_tf.objectives import losses
from flows_tf.objectives.base import Objective, as_data

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = ["MaximumLikelihood"]


class MaximumLikelihood(Objective):
    """``min -(1/B) sum_b log q(x_b)`` over shuffled minibatches of ``train``.

    Epoch ``e`` visits ``train`` in the order ``permutation(rng(seed, e))``; the score is the
    mean validation log-likelihood (without ``val``: none, so no early stopping).

    Image data (given its ``pixel_space`` record) is dequantized afresh at every step with
    ``dequantize: fresh`` (the default): a training image's integer levels ``v`` become
    ``v + u``, ``u ~ U[0, 1)^D`` drawn from the stateless seed ``(seed, t)``, then go to model
    space. The loss is then an unbiased estimate of the dequantized negative log-likelihood
    ``-E_u log q(v + u)`` (Theis et al. 2016, arXiv:1511.01844), and a flow cannot fit one
    fixed draw of the noise. ``dequantize: fixed`` trains on the prepared split as it is.
    """

    name, needs, required = "mle", ("train", "val", "pixel_space"), ("train",)
    extra_settings = {"dequantize": "fresh"}
    validates = True
    reseedable = True

    def __init__(
        self,
        flow: tfd.TransformedDistribution,
        settings: dict,
        seed: int,
        *,
        train: ArrayLike | None = None,
        val: ArrayLike | None = None,
        pixel_space: dict | None = None,
        **_,
    ):
        super().__init__(flow, settings, seed, train=train)
        mode = settings["dequantize"]
        if mode not in ("fresh", "fixed"):
            raise ValueError(f"training setting 'dequantize' must be fresh or fixed, got {mode!r}")
        self.pixel_space = pixel_space if mode == "fresh" else None
        levels = None if self.pixel_space is None else _levels(train, self.pixel_space)
        train = as_data(train, "train", flow)
        self.val = None if val is None else as_data(val, "validation", flow)
        self.batch = min(self.batch, len(train))
        self.n_train = len(train)
        self.steps_per_epoch = len(train) // self.batch
        self.total_steps = int(settings["max_epochs"]) * self.steps_per_epoch
        self.eval_every = int(settings["eval_every"] or self.steps_per_epoch)
        self.signature = [tf.TensorSpec([None, self.batch], tf.int32)]
        self._train = tf.constant(train)
        if levels is not None:
            self.signature.append(tf.TensorSpec([None, 2], tf.int32))
            self._levels = tf.constant(levels.astype(train.dtype))
        self._train_rows = train
        # validation compiled as the training blocks are (XLA halves NSF's digits pass)
        self._log_prob = evaluate.compiled_log_prob(flow, settings["jit_compile"])
        self._order = (None, None)

    def initialize(self) -> None:
        flows.initialize(self.flow, self._train_rows[: self.batch])

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self._order = (None, None)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_train)
            self._order = (epoch, order.astype(np.int32))
        return self._order[1]

    def block(self, start: int, k: int) -> tuple[np.ndarray, ...]:
        rows = []
        for t in range(start, start + k):
            epoch, b = divmod(t, self.steps_per_epoch)
            rows.append(self._epoch_order(epoch)[b * self.batch : (b + 1) * self.batch])
        if self.pixel_space is None:
            return (np.stack(rows),)
        steps = np.arange(start, start + k)
        seeds = np.stack([np.full(k, self.seed % 2**31), steps], axis=1).astype(np.int32)
        return np.stack(rows), seeds

    def loss(self, index: tf.Tensor, step_seed: tf.Tensor | None = None) -> tf.Tensor:
        if step_seed is None:
            return losses.mle_loss(self.flow, tf.gather(self._train, index))
        v = tf.gather(self._levels, index)
        u = tf.random.stateless_uniform(tf.shape(v), seed=step_seed, dtype=v.dtype)
        ps = self.pixel_space
        x = digits.to_model_space(v + u, ps["logit"], ps["alpha"], xp=tf.math)
        return losses.mle_loss(self.flow, x)

    def score(self, step: int, train_loss: float) -> float | None:
        if self.val is None:
            return None
        batches = self.settings["eval_batch_size"]
        return float(np.mean(evaluate.batched(self._log_prob, self.val, batches)))

    def where(self, step: int) -> str:
        return f"epoch {step // self.steps_per_epoch}/{self.settings['max_epochs']}"

    def record(self, step: int, train_loss: float, score: float | None) -> dict:
        return {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "train_loss": train_loss,
            "val_loglik": score,
        }


def _levels(train: ArrayLike, pixel_space: dict) -> np.ndarray:
    """The integer levels ``v = floor(p)`` of dequantized training pixels ``p = v + u``."""
    pixels = digits.to_pixel_space(np.asarray(train, dtype=np.float64), pixel_space)
    levels = np.floor(pixels)
    if levels.min() < 0 or levels.max() >= pixel_space["levels"]:
        raise ValueError(f"train data is not in the pixel space {pixel_space}")
    return levels
