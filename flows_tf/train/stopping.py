"""The stopping rule shared by every objective: patience on a score, higher is better.

At each evaluation the objective reports a score ``s_j`` (validation log-likelihood for maximum
likelihood, minus the mean training loss of the last window for the sampled objectives, or
``None`` while a warm-up such as annealing makes scores incomparable). With ``best`` the highest
score so far, an evaluation improves when ``s_j > best + min_delta``. After ``patience``
evaluations in a row without improvement the learning rate has plateaued: while fewer than
``lr_decays`` cuts were made, the best weights are restored, the learning rate is multiplied by
``lr_decay_factor`` and patience starts again (reduce-on-plateau); otherwise the rule fires and
the run has *converged*. The weights of the best evaluation are kept and returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

    from flows_tf.train.state import TrainState

__all__ = ["Patience"]


class Patience:
    """Early stopping, with optional learning-rate cuts, on a score kept in a
    :class:`~flows_tf.train.state.TrainState`."""

    def __init__(
        self,
        state: TrainState,
        variables: Sequence[tf.Variable],
        patience: int | None,
        min_delta: float = 0.0,
        lr_decays: int = 0,
        lr_decay_factor: float = 0.2,
    ):
        self.state, self.variables = state, variables
        self.patience, self.min_delta = patience, float(min_delta)
        self.lr_decays, self.lr_decay_factor = int(lr_decays), float(lr_decay_factor)

    def update(self, score: float | None) -> bool:
        """Record one evaluation; returns True when the run should stop (converged)."""
        if score is None:
            return False
        if score > float(self.state.best_score.numpy()) + self.min_delta:
            self.state.best_score.assign(score)
            self.state.bad_evals.assign(0)
            self.state.keep_best(self.variables)
            return False
        self.state.bad_evals.assign_add(1)
        if self.patience is None or int(self.state.bad_evals.numpy()) < self.patience:
            return False
        if int(self.state.lr_decays.numpy()) >= self.lr_decays:
            return True
        self.state.lr_decays.assign_add(1)
        self.state.bad_evals.assign(0)
        self.state.lr_scale.assign(self.state.lr_scale * self.lr_decay_factor)
        self.state.restore_best(self.variables)
        return False

    @property
    def has_best(self) -> bool:
        return float(self.state.best_score.numpy()) > float("-inf")
