"""The stopping rule shared by every objective: patience on a score, higher is better.

At each evaluation the objective reports a score ``s_j`` (validation log-likelihood for maximum
likelihood, minus the mean training loss of the last window for the sampled objectives, or
``None`` while a warm-up such as annealing makes scores incomparable). With ``best`` the highest
score so far, an evaluation improves when ``s_j > best + min_delta``; after ``patience``
evaluations in a row without improvement the rule fires and the run has *converged*. The weights
of the best evaluation are kept and returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

    from flows_tf.train.state import TrainState

__all__ = ["Patience"]


class Patience:
    """Early stopping on a score kept in a :class:`~flows_tf.train.state.TrainState`."""

    def __init__(
        self,
        state: TrainState,
        variables: Sequence[tf.Variable],
        patience: int | None,
        min_delta: float = 0.0,
    ):
        self.state, self.variables = state, variables
        self.patience, self.min_delta = patience, float(min_delta)

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
        return self.patience is not None and int(self.state.bad_evals.numpy()) >= self.patience

    @property
    def has_best(self) -> bool:
        return float(self.state.best_score.numpy()) > float("-inf")
