"""Variational inference: reverse KL against an unnormalised target density."""

from flows_tf.objectives import losses
from flows_tf.objectives.base import SampledObjective

__all__ = ["ReverseKL"]


class ReverseKL(SampledObjective):
    """Variational inference: ``min E_q[log q(x) - beta_t log p~(x)]`` against ``target``."""

    name, needs, required = "vi", ("target",), ("target",)

    def __init__(self, flow, settings, seed, *, target=None, **_):
        super().__init__(flow, settings, seed, target=target)
        self.target = target

    def loss(self, step_seed, beta):
        return losses.reverse_kl_loss(self.flow, self.target, self.batch, beta=beta, seed=step_seed)
