"""The objective contract: what ``fit`` asks of every objective, and sampled objectives.

An objective turns a block of training steps ``t0 .. t0+k-1`` into tensors (:meth:`block`),
gives the loss of one step from one slice of that block (:meth:`loss`, traced inside the
compiled loop of :func:`flows_tf.train.fit`), and scores the run at each evaluation
(:meth:`score`, higher is better; ``None`` while scores are not comparable). ``fit`` knows
nothing else about it. Minibatch order and Monte Carlo seeds are pure functions of
``(seed, step)``, so a resumed run sees exactly the inputs of an uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tf_keras
from numpy.typing import ArrayLike

from flows_tf.objectives import losses

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = ["Objective", "SampledObjective", "as_data"]


def as_data(x: ArrayLike, name: str, flow: tfd.Distribution) -> np.ndarray:
    x = np.asarray(x)
    dim = int(np.prod(flow.event_shape))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} data must have shape (N, {dim}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} data contains NaN or inf")
    return x.astype(flow.dtype.as_numpy_dtype)


class Objective:
    """Base class. Subclasses set ``name``, ``needs`` and implement the four methods below."""

    name = ""
    needs: tuple[str, ...] = ()  # inputs of fit: "train", "val", "target", "teacher"
    extra_settings: dict = {}  # objective-specific training settings and their defaults
    validates = False  # True: :meth:`score` is the mean validation log-likelihood
    # True: the compiled loss reads the seed only through :meth:`block`'s inputs, so one
    # objective serves every seed of a model after :meth:`reseed` (train.fit's ``shared``)
    reseedable = False

    def __init__(self, flow: tfd.TransformedDistribution, settings: dict, seed: int, **inputs):
        missing = [k for k in self.required if inputs.get(k) is None]
        if missing:
            raise ValueError(f"objective {self.name!r} needs {' and '.join(missing)}")
        self.flow, self.settings, self.seed = flow, settings, int(seed)
        self.batch = int(settings["batch_size"])

    required: tuple[str, ...] = ()  # the subset of ``needs`` that must be given

    total_steps: int
    eval_every: int
    signature: list

    def initialize(self) -> None:
        """Data-dependent initialisation of a fresh run (default: nothing)."""

    def reseed(self, seed: int) -> None:
        """Serve the run of ``seed`` (only when :attr:`reseedable`)."""
        if not self.reseedable:
            raise TypeError(f"objective {self.name!r} cannot change its seed")
        self.seed = int(seed)

    def learning_rate(self) -> float | tf_keras.optimizers.schedules.LearningRateSchedule:
        """The base learning rate: constant, or cosine to 0 at the step cap."""
        base = float(self.settings["learning_rate"])
        if self.settings["lr_schedule"] == "cosine":
            return tf_keras.optimizers.schedules.CosineDecay(base, decay_steps=self.total_steps)
        return base

    def block(self, start: int, k: int) -> tuple:
        """The inputs of steps ``start .. start+k-1``, each with a leading axis of ``k``."""
        raise NotImplementedError

    def loss(self, *step_inputs) -> tf.Tensor:
        """Scalar loss of one step (traced once inside the compiled loop)."""
        raise NotImplementedError

    def score(self, step: int, train_loss: float) -> float | None:
        """Score of the run at an evaluation; higher is better; None: not comparable yet."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Facts about the run's inputs for its log, said once at the start (default: none)."""
        return []

    def where(self, step: int) -> str:
        """Position shown in progress lines beside the step (e.g. the epoch)."""
        return ""

    def record(self, step: int, train_loss: float, score: float | None) -> dict:
        """One history row (also logged as metrics)."""
        return {"step": step, "train_loss": train_loss}


class SampledObjective(Objective):
    """Objectives on the flow's own samples: step ``t`` draws with the stateless seed
    ``(seed, t)`` at inverse temperature ``beta_t`` (:func:`losses.anneal_beta`)."""

    reseedable = True

    def __init__(self, flow: tfd.TransformedDistribution, settings: dict, seed: int, **inputs):
        super().__init__(flow, settings, seed, **inputs)
        self.total_steps = int(settings["steps"])
        self.eval_every = int(settings["eval_every"] or 100)
        self.anneal_steps = int(settings["anneal_steps"])
        self.signature = [tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([None], tf.float64)]

    def block(self, start: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        steps = np.arange(start, start + k)
        seeds = np.stack([np.full(k, self.seed % 2**31), steps], axis=1).astype(np.int32)
        betas = np.broadcast_to(losses.anneal_beta(steps, self.anneal_steps).numpy(), (k,))
        return seeds, betas

    def score(self, step: int, train_loss: float) -> float | None:
        """Minus the window's mean loss, once annealing is over (earlier losses are tempered)."""
        return None if step - self.eval_every < self.anneal_steps else -train_loss

    def record(self, step: int, train_loss: float, score: float | None) -> dict:
        beta = float(losses.anneal_beta(step - 1, self.anneal_steps))
        return {"step": step, "train_loss": train_loss, "beta": beta}
