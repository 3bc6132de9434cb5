"""Where a training run stands, saved with the flow and the optimizer so a killed run resumes.

Everything that defines the run's position lives in :class:`TrainState` (step, best score,
patience counter, learning-rate scale and cuts, loss accumulated since the last evaluation, history,
best weights); :class:`Checkpoints` writes it under ``workdir/checkpoints`` together with the
flow's variables and Adam's moments, and refuses to resume a run made with other settings.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    import tf_keras
    from tensorflow_probability import distributions as tfd

__all__ = ["Checkpoints", "TrainState", "restore_flow"]


class TrainState(tf.Module):
    """Counters, best-so-far score and weights of one run (all ``tf.Variable``, checkpointed)."""

    def __init__(self, variables: Sequence[tf.Variable]):
        super().__init__(name="train_state")

        def var(value: object, dtype: tf.DType) -> tf.Variable:
            return tf.Variable(value, dtype=dtype, trainable=False)

        self.step = var(0, tf.int64)
        self.loss_sum = var(0.0, tf.float64)  # training loss summed since the last evaluation
        self.loss_count = var(0, tf.int64)
        self.best_score = var(-np.inf, tf.float64)  # higher is better (see stopping.py)
        self.bad_evals = var(0, tf.int64)
        self.final_loss = var(np.nan, tf.float64)
        self.lr_scale = var(1.0, tf.float32)
        self.lr_decays = var(0, tf.int64)  # plateau cuts of the learning rate so far
        self.retries = var(0, tf.int64)
        self.seconds = var(0.0, tf.float64)
        self.done = var(False, tf.bool)
        self.converged = var(False, tf.bool)  # the stopping rule fired (not the step cap)
        self.history = var("[]", tf.string)
        self.best = [tf.Variable(v, trainable=False) for v in variables]
        self._counters = [v for v in self.variables if not any(v is b for b in self.best)]
        self._fresh = [v.numpy() for v in self._counters]

    def reset(self, variables: Sequence[tf.Variable]) -> None:
        """The state of a fresh run of ``variables`` (their values as the best so far)."""
        for counter, value in zip(self._counters, self._fresh, strict=True):
            counter.assign(value)
        self.keep_best(variables)

    def keep_best(self, variables: Sequence[tf.Variable]) -> None:
        for best, v in zip(self.best, variables, strict=True):
            best.assign(v)

    def restore_best(self, variables: Sequence[tf.Variable]) -> None:
        for best, v in zip(self.best, variables, strict=True):
            v.assign(best)


class Checkpoints:
    """``tf.train.CheckpointManager`` of (flow, optimizer, state) plus the run's identity.

    ``run_key`` (objective, seed and the settings that change the weights) is written beside
    the first checkpoint; resuming with a different key raises ``ValueError`` naming what
    changed, so a stale checkpoint is never continued by mistake.
    """

    def __init__(
        self,
        workdir: str | pathlib.Path,
        flow: tfd.TransformedDistribution,
        optimizer: tf_keras.optimizers.Optimizer,
        state: TrainState,
        run_key: dict,
    ):
        self.dir = pathlib.Path(workdir) / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.checkpoint = tf.train.Checkpoint(flow=flow, optimizer=optimizer, state=state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.dir), max_to_keep=2)
        self.run_key = json.loads(json.dumps(run_key))
        self._t0 = time.perf_counter()
        self._seconds0 = 0.0
        self.saved_step = 0

    @property
    def exists(self) -> bool:
        return self.manager.latest_checkpoint is not None

    def start(self) -> bool:
        """Resume from the latest checkpoint (True) or write step 0 of a fresh run (False)."""
        settings_file = self.dir / "settings.json"
        resumed = self.exists
        if resumed:
            saved = json.loads(settings_file.read_text()) if settings_file.exists() else None
            if saved is not None and saved != self.run_key:
                changed = sorted(
                    k
                    for k, v in self.run_key["settings"].items()
                    if saved.get("settings", {}).get(k) != v
                )
                raise ValueError(
                    f"checkpoint in {self.dir} was written by a run with other arguments "
                    f"(changed: {changed or ['objective/seed']}); use a fresh workdir"
                )
            self.checkpoint.restore(
                self.manager.latest_checkpoint
            ).assert_existing_objects_matched()
        else:
            settings_file.write_text(json.dumps(self.run_key, indent=1))
        self._seconds0 = float(self.state.seconds.numpy())
        self._t0 = time.perf_counter()
        if not resumed:
            self.save([])
        self.saved_step = int(self.state.step.numpy())
        return resumed

    def elapsed(self) -> float:
        """Training seconds over every attempt of this run."""
        return self._seconds0 + time.perf_counter() - self._t0

    def save(self, history: list) -> None:
        self.state.seconds.assign(self.elapsed())
        self.state.history.assign(json.dumps(history))
        step = int(self.state.step.numpy())
        self.manager.save(checkpoint_number=step)
        self.saved_step = step

    def restore_latest(self) -> list:
        """Go back to the latest checkpoint (divergence retry); returns its history."""
        self.checkpoint.restore(self.manager.latest_checkpoint)
        return json.loads(self.state.history.numpy().decode())


def restore_flow(flow: tfd.TransformedDistribution, workdir: str | pathlib.Path) -> int:
    """Load the weights of the latest checkpoint of a :func:`~flows_tf.train.fit` run.

    After a finished run these are the returned (best) weights. Returns the checkpoint's step.
    """
    directory = pathlib.Path(workdir) / "checkpoints"
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    state = TrainState(flow.trainable_variables)
    tf.train.Checkpoint(flow=flow, state=state).restore(latest).expect_partial()
    return int(state.step.numpy())
