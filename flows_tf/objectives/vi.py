"""Variational inference: reverse KL against an unnormalised target density."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flows_tf.objectives import losses
from flows_tf.objectives.base import SampledObjective

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow_probability import distributions as tfd

__all__ = ["ReverseKL"]


class ReverseKL(SampledObjective):
    """Variational inference: ``min E_q[log q(x) - beta_t log p~(x)]`` against ``target``."""

    name, needs, required = "vi", ("target",), ("target",)

    def __init__(
        self,
        flow: tfd.TransformedDistribution,
        settings: dict,
        seed: int,
        *,
        target: Callable[[tf.Tensor], tf.Tensor] | None = None,
        **_,
    ):
        super().__init__(flow, settings, seed, target=target)
        self.target = target

    def loss(self, step_seed: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        return losses.reverse_kl_loss(self.flow, self.target, self.batch, beta=beta, seed=step_seed)
