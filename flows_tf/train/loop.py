"""The training loop: blocks of compiled steps, evaluations, early stopping, checkpoints.

:func:`fit` trains one flow with one objective (:data:`OBJECTIVES`). Steps run in blocks of up
to ``steps_per_call`` inside one compiled call (an in-graph loop, optionally XLA), so Python is
entered only at block boundaries: there the loss and gradient norm of every step of the block
are checked, the objective is evaluated every ``eval_every`` steps (the stopping rule of
:mod:`.stopping`), progress lines are printed and checkpoints written. A run ends when its
stopping rule fires (``converged``) or at the step cap; the result says which.

The optimizer is ``tf_keras.optimizers.Adam``: TFP's ``AutoregressiveNetwork`` keeps its MADE
masks through kernel constraints, which only a Keras optimizer that applies constraints honours.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tf_keras

from flows_tf import modelio
from flows_tf.objectives import OBJECTIVES
from flows_tf.seeding import set_seeds
from flows_tf.train.progress import Progress
from flows_tf.train.settings import FREE_ON_RESUME, check_settings
from flows_tf.train.state import Checkpoints, TrainState
from flows_tf.train.stopping import Patience

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

    from flows_tf.objectives import Objective

__all__ = ["OBJECTIVES", "TrainResult", "TrainingDiverged", "fit", "set_seeds"]


class TrainingDiverged(RuntimeError):
    """The loss (or its gradient, or the validation score) became non-finite."""


class _Diverged(Exception):
    def __init__(self, step: int, what: str, value: object):
        super().__init__(f"non-finite {what} ({value}) at step {step}")


@dataclass
class TrainResult:
    """Summary of a finished :func:`fit`.

    ``best_score`` is the best evaluation score (validation log-likelihood for mle with ``val``,
    minus the window-mean loss for vi and distill; NaN when never scored); ``final_loss`` the
    mean training loss of the last evaluation window; ``converged`` whether the stopping rule
    (not the step cap) ended the run; ``seconds`` sums every attempt of a resumed run.
    """

    steps: int
    epochs: int
    seconds: float
    best_score: float
    final_loss: float
    converged: bool
    history: list[dict]
    resumed: bool
    resumed_from_step: int = 0
    retries: int = 0
    lr_decays: int = 0  # plateau cuts of the learning rate made before the run ended
    traces: int = 0  # times the block of steps was traced in this call
    # wall time of this call's first block of steps: tracing, graph optimisation and XLA
    # compilation (or loading it from the compile cache), then its few steps (NaN: no block ran)
    first_call_seconds: float = math.nan
    threads: dict = field(default_factory=dict)

    @property
    def stopped_by(self) -> str:
        return "patience" if self.converged else "step_cap"


class _ScaledSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """``lr_t = scale * base(t)``; ``scale`` is halved on each divergence retry."""

    def __init__(
        self, base: float | tf_keras.optimizers.schedules.LearningRateSchedule, scale: tf.Variable
    ):
        super().__init__()
        self.base, self.scale = base, scale

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        base = self.base(step) if callable(self.base) else self.base
        return tf.cast(base, tf.float32) * self.scale

    def get_config(self) -> dict:
        return {}


def _optimizer(
    objective: Objective, settings: dict, state: TrainState, variables: list[tf.Variable]
) -> tf_keras.optimizers.Adam:
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=_ScaledSchedule(objective.learning_rate(), state.lr_scale),
        weight_decay=float(settings["weight_decay"]) or None,
        jit_compile=False,
    )
    optimizer.build(variables)
    return optimizer


def _block_step(
    objective: Objective,
    optimizer: tf_keras.optimizers.Optimizer,
    variables: list[tf.Variable],
    clip: float | None,
    jit: bool,
) -> tf.types.experimental.PolymorphicFunction:
    """``run(*block) -> (losses, grad_norms)``: one compiled call, ``k`` optimizer steps."""

    @tf.function(input_signature=objective.signature, jit_compile=bool(jit))
    def run(*block) -> tuple[tf.Tensor, tf.Tensor]:
        k = tf.shape(block[0])[0]
        # scalar elements, declared: with an unknown element shape XLA lowers the loop body to
        # HLO twice (once to learn the shape), 3 of 7.5 s of a warm planar K=32 first block
        losses = tf.TensorArray(tf.float64, size=k, element_shape=[])
        norms = tf.TensorArray(tf.float64, size=k, element_shape=[])
        for i in tf.range(k):
            with tf.GradientTape() as tape:
                loss = objective.loss(*(b[i] for b in block))
            grads = tape.gradient(loss, variables)
            norm = tf.linalg.global_norm(grads)
            if clip:
                grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norm)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            losses = losses.write(i, tf.cast(loss, tf.float64))
            norms = norms.write(i, tf.cast(norm, tf.float64))
        return losses.stack(), norms.stack()

    return run


@dataclass
class _Parts:
    """A flow with its objective, training state, optimizer and compiled block of steps."""

    flow: tfd.TransformedDistribution
    variables: list
    objective: Objective
    state: TrainState
    optimizer: tf_keras.optimizers.Optimizer
    run_block: tf.types.experimental.PolymorphicFunction
    inputs: dict  # held so that the ids in its ``shared`` key stay these objects'

    @classmethod
    def of(
        cls,
        flow: tfd.TransformedDistribution,
        objective_cls: type,
        s: dict,
        seed: int,
        inputs: dict,
        shared: dict | None,
    ) -> _Parts:
        """Build the parts of ``flow``, or restart those ``shared`` holds for the same run."""
        key = None
        if shared is not None and objective_cls.reseedable:
            key = (
                objective_cls.name,
                json.dumps(s, sort_keys=True, default=str),
                tuple(sorted((name, id(value)) for name, value in inputs.items())),
                tuple((tuple(v.shape), v.dtype.name, v.trainable) for v in flow.variables),
            )
            if key in shared:
                return shared[key].restart(flow, seed)
        variables = list(flow.trainable_variables)
        objective = objective_cls(flow, s, seed, **inputs)
        state = TrainState(variables)
        optimizer = _optimizer(objective, s, state, variables)
        run_block = _block_step(objective, optimizer, variables, s["clip_norm"], s["jit_compile"])
        parts = cls(flow, variables, objective, state, optimizer, run_block, inputs)
        if key is not None:
            shared[key] = parts
        return parts

    def restart(self, flow: tfd.TransformedDistribution, seed: int) -> _Parts:
        """A fresh run of ``seed`` from ``flow``'s weights, on these compiled parts."""
        modelio.assign_weights(self.flow, flow.variables)
        for slot in self.optimizer.variables:  # Adam's step and moments
            slot.assign(tf.zeros_like(slot))
        self.state.reset(self.variables)
        self.objective.reseed(seed)
        return self


class _Run:
    """One attempt at training: the block loop between two checkpoints or to the end."""

    def __init__(
        self,
        objective: Objective,
        state: TrainState,
        checkpoints: Checkpoints,
        stopping: Patience,
        progress: Progress,
        log: Callable[[int, dict], None],
        lr: Callable[[], float],
    ):
        self.o, self.state, self.ckpt, self.lr = objective, state, checkpoints, lr
        self.stopping, self.progress, self.log = stopping, progress, log
        self.history = []
        self.first_call_seconds = math.nan

    def evaluate(self, step: int) -> tuple[float, float | None]:
        train_loss = float(self.state.loss_sum.numpy()) / max(1, int(self.state.loss_count))
        score = self.o.score(step, train_loss)
        if score is not None and not math.isfinite(score):
            raise _Diverged(step, "validation score", score)
        stop = self.stopping.update(score)
        row = self.o.record(step, train_loss, score)
        self.history.append(row)
        metrics = {k: v for k, v in row.items() if k != "step" and v is not None}
        self.log(step, {**metrics, "lr": self.lr()})
        self.state.final_loss.assign(train_loss)
        self.state.loss_sum.assign(0.0)
        self.state.loss_count.assign(0)
        if stop:
            self.state.converged.assign(True)
            self.state.done.assign(True)
        return train_loss, score

    def __call__(
        self,
        run_block: Callable[..., tuple[tf.Tensor, tf.Tensor]],
        steps_per_call: int,
        checkpoint_every: int,
    ) -> None:
        o, state = self.o, self.state
        while not bool(state.done.numpy()) and int(state.step.numpy()) < o.total_steps:
            step = int(state.step.numpy())
            next_eval = (step // o.eval_every + 1) * o.eval_every
            k = min(steps_per_call, next_eval - step, o.total_steps - step)
            started = time.perf_counter()
            losses, norms = (t.numpy() for t in run_block(*o.block(step, k)))
            if math.isnan(self.first_call_seconds):
                self.first_call_seconds = time.perf_counter() - started
            for what, values in (("loss", losses), ("gradient norm", norms)):
                bad = np.flatnonzero(~np.isfinite(values))
                if len(bad):
                    raise _Diverged(step + int(bad[0]) + 1, what, values[bad[0]])
            step += k
            state.step.assign(step)
            state.loss_sum.assign_add(float(losses.sum()))
            state.loss_count.assign_add(k)
            val = None
            if step % o.eval_every == 0 or step == o.total_steps:
                _, val = self.evaluate(step)
                if step - self.ckpt.saved_step >= checkpoint_every:
                    self.ckpt.save(self.history)
            where = o.where(step)
            self.progress.line(
                step, float(losses[-1]), where=where, val=val, elapsed=self.ckpt.elapsed()
            )


def fit(
    flow: tfd.TransformedDistribution,
    job_objective: str,
    *,
    settings: dict,
    workdir: str | Path,
    seed: int,
    log: Callable[[int, dict], None] | None = None,
    progress: Callable[[str], None] | None = None,
    shared: dict | None = None,
    **inputs,
) -> TrainResult:
    """Train ``flow`` with one objective, resuming from ``workdir/checkpoints`` when present.

    Args:
        flow: the model to train (its ``trainable_variables`` are updated in place).
        job_objective: a name in :data:`OBJECTIVES` (``"mle"``, ``"vi"``, ``"distill"``, ...).
        settings: training settings (:data:`DEFAULT_SETTINGS` plus the objective's own);
            unknown keys raise ``ValueError``.
        workdir: directory of the run; checkpoints go to ``workdir/checkpoints``.
        seed: seeds minibatch order and Monte Carlo samples, as stateless functions of
            ``(seed, step)``; the flow's initial weights are the caller's (seed them with
            :func:`set_seeds` before building it).
        log: ``log(step, metrics)`` at every evaluation.
        progress: ``progress(line)`` for human-readable progress lines.
        shared: a dict that fits of one model spec (builder, hyperparameters, event shape) in
            one process pass along, e.g. the seeds of a variant: a fit of a reseedable
            objective whose settings and inputs (the same objects) an earlier fit had trains
            on that fit's flow, optimizer and compiled block of steps, restarted as a fresh
            run (``flow``'s weights, Adam's moments and step zeroed, a new state), instead of
            tracing and compiling them again; then copies the weights back into ``flow``.
        **inputs: what the objective needs: ``train``, ``val`` (mle), ``target`` (vi),
            ``teacher`` (distill).

    Returns:
        a :class:`TrainResult`; the flow holds the best evaluated weights (the last ones when
        the objective never scored).

    Raises:
        TrainingDiverged: non-finite loss, gradient or score (after ``max_retries`` retries
            when ``on_nonfinite="retry"``); the message names the step.
    """
    if job_objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {job_objective!r}; known: {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[job_objective]
    s = check_settings(dict(settings), cls.extra_settings)
    if not flow.trainable_variables:
        raise ValueError("the flow has no trainable variables")
    inputs = {k: v for k, v in inputs.items() if v is not None}
    parts = _Parts.of(flow, cls, s, seed, inputs, shared)
    objective, state, variables = parts.objective, parts.state, parts.variables
    optimizer = parts.optimizer
    run_key = {
        "objective": job_objective,
        "seed": int(seed),
        "settings": {k: v for k, v in s.items() if k not in FREE_ON_RESUME},
    }
    ckpt = Checkpoints(workdir, parts.flow, optimizer, state, run_key)
    if not ckpt.exists:
        objective.initialize()
    resumed = ckpt.start()
    start_step = int(state.step.numpy())
    say = progress or (lambda line: None)
    if resumed:
        say(f"[{job_objective}] resuming from step {start_step}")
    for note in objective.notes():
        say(f"[{job_objective}] {note}")
    stopping = Patience(
        state, variables, s["patience"], s["min_delta"], s["lr_decays"], s["lr_decay_factor"]
    )
    lines = Progress(say, job_objective, objective.total_steps, s["progress_seconds"], start_step)

    def lr() -> float:
        return float(optimizer.learning_rate.numpy())

    run = _Run(objective, state, ckpt, stopping, lines, log or (lambda step, metrics: None), lr)
    run.history = json.loads(state.history.numpy().decode())
    run_block = parts.run_block
    _train_with_retries(run, run_block, ckpt, s, say, job_objective)
    state.done.assign(True)
    if stopping.has_best:
        state.restore_best(variables)
    ckpt.save(run.history)  # the final checkpoint holds the returned weights
    if parts.flow is not flow:
        modelio.assign_weights(flow, parts.flow.variables)
    final = float(state.final_loss.numpy())
    steps = int(state.step.numpy())
    lines.line(steps, final, where=objective.where(steps), elapsed=ckpt.elapsed(), final=True)
    return _result(run, state, stopping, run_block, resumed, start_step)


def _result(
    run: _Run,
    state: TrainState,
    stopping: Patience,
    run_block: tf.types.experimental.PolymorphicFunction,
    resumed: bool,
    start_step: int,
) -> TrainResult:
    """What :func:`fit` returns, read off the finished run's state."""
    objective, steps = run.o, int(state.step.numpy())
    return TrainResult(
        steps=steps,
        epochs=steps // objective.steps_per_epoch if hasattr(objective, "steps_per_epoch") else 0,
        seconds=float(state.seconds.numpy()),
        best_score=float(state.best_score.numpy()) if stopping.has_best else math.nan,
        final_loss=float(state.final_loss.numpy()),
        converged=bool(state.converged.numpy()),
        history=run.history,
        resumed=resumed,
        resumed_from_step=start_step,
        retries=int(state.retries.numpy()),
        lr_decays=int(state.lr_decays.numpy()),
        traces=int(run_block.experimental_get_tracing_count()),
        first_call_seconds=run.first_call_seconds,
        threads={
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    )


def _train_with_retries(
    run: _Run,
    run_block: Callable[..., tuple[tf.Tensor, tf.Tensor]],
    ckpt: Checkpoints,
    s: dict,
    say: Callable[[str], None],
    label: str,
) -> None:
    """Run to the end; on divergence restore the last checkpoint and halve the learning rate."""
    retries = 0
    while True:
        try:
            return run(run_block, s["steps_per_call"], s["checkpoint_every"])
        except _Diverged as err:
            if s["on_nonfinite"] != "retry" or retries >= s["max_retries"]:
                suffix = f" (after {retries} retries)" if retries else ""
                raise TrainingDiverged(f"training diverged: {err}{suffix}") from None
            retries += 1
            run.history = ckpt.restore_latest()
            run.state.retries.assign_add(1)
            run.state.lr_scale.assign(run.state.lr_scale * 0.5)
            say(
                f"[{label}] {err}; retry {retries}/{s['max_retries']} from step "
                f"{int(run.state.step.numpy())} with learning rate x{run.state.lr_scale.numpy()}"
            )
