"""Density distillation of a student flow from a trained teacher (Parallel WaveNet and after)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf
import tf_keras

from flows_tf import distill_bank
from flows_tf.objectives import losses
from flows_tf.objectives.base import SampledObjective

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

__all__ = ["Distill", "DistillPaired"]


class Distill(SampledObjective):
    """Density distillation (Parallel WaveNet): ``min KL(S || T)`` on the student's samples.

    Mode-seeking: a student that misses a fraction ``m`` of the teacher's mass pays only
    ``-log(1 - m)``, and a mode without student samples sends no gradient.
    """

    name, needs, required = "distill", ("teacher",), ("teacher",)
    reseedable = False  # its teacher (and a paired bank) belong to one seed

    def __init__(
        self,
        flow: tfd.TransformedDistribution,
        settings: dict,
        seed: int,
        *,
        teacher: tfd.TransformedDistribution | None = None,
        **_,
    ):
        super().__init__(flow, settings, seed, teacher=teacher)
        self.teacher = teacher

    def loss(self, step_seed: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        return losses.distillation_loss(
            self.flow, self.teacher, self.batch, beta=beta, seed=step_seed
        )


class DistillPaired(Distill):
    """Paired distillation, then reverse KL with a mass-covering forward term.

    Stage 1 (``t < pretrain_steps``): regress the student's map onto the teacher's on a cached
    bank of pairs, ``min (1/B) sum_b ||S(z_b) - T(z_b)||^2`` (Baranchuk et al. 2021). Stage 2:
    ``min KL(S || T) + lambda_f E_{x ~ T}[-log S(x)] + lambda_a (1/B) sum_b ||S(z_b) - T(z_b)||^2``
    with ``x`` a sub-batch of ``forward_batch`` bank samples: the forward term runs the student's
    sequential inverse on that bounded sub-batch only. Given the training data, the bank keeps
    only the teacher's samples near it (:func:`~flows_tf.distill_bank.keep_near_data`). Scores
    (and early stopping) start with stage 2. The bank is drawn once from
    ``(seed, BANK_STREAM)``, so a resumed run sees the same pairs.
    """

    name = "distill_paired"
    extra_settings = {
        "bank_size": 20000,
        "pretrain_steps": 2000,
        "forward_weight": 1.0,
        "forward_batch": 64,
        "anchor_weight": 0.0,
        "finetune_learning_rate": None,  # None: learning_rate
    }

    def __init__(
        self, flow: tfd.TransformedDistribution, settings: dict, seed: int, **inputs: object
    ) -> None:
        super().__init__(flow, settings, seed, **inputs)
        self.pretrain = int(settings["pretrain_steps"])
        self.bank = distill_bank.build_teacher_pairs(
            self.teacher, int(settings["bank_size"]), seed=seed
        )
        if inputs.get("train") is not None:
            self.bank, _ = distill_bank.keep_near_data(self.bank, inputs["train"])
        self._draw = distill_bank.draw_pairs

    def notes(self) -> list[str]:
        drawn, kept = int(self.settings["bank_size"]), self.bank.size
        return [
            f"teacher bank: {kept} pairs, {drawn - kept} of {drawn} dropped (sample outside "
            "the training data's box widened by half its width)"
        ]

    def _paired(self, step_seed: tf.Tensor) -> tf.Tensor:
        z, x = self._draw(self.bank, self.batch, step_seed)
        return losses.paired_regression_loss(self.flow, z, x)

    def _covering(self, step_seed: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        s = self.settings
        loss = losses.distillation_loss(
            self.flow, self.teacher, self.batch, beta=beta, seed=step_seed
        )
        if s["forward_weight"]:  # the student's sequential inverse: skipped at weight 0
            sub_seed = tf.stack([step_seed[0], step_seed[1] + 2**30])  # not the KL's stream
            _, x = self._draw(self.bank, int(s["forward_batch"]), sub_seed)
            loss += s["forward_weight"] * losses.forward_kl_loss(self.flow, x)
        if s["anchor_weight"]:
            loss += s["anchor_weight"] * self._paired(step_seed)
        return loss

    def loss(self, step_seed: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        return tf.cond(
            tf.cast(step_seed[1], tf.int64) < self.pretrain,
            lambda: tf.cast(self._paired(step_seed), tf.float64),
            lambda: tf.cast(self._covering(step_seed, beta), tf.float64),
        )

    def score(self, step: int, train_loss: float) -> float | None:
        return None if step - self.eval_every < self.pretrain else super().score(step, train_loss)

    def learning_rate(self) -> float | tf_keras.optimizers.schedules.LearningRateSchedule:
        """``learning_rate`` while pretraining, then ``finetune_learning_rate``."""
        finetune = self.settings["finetune_learning_rate"]
        if finetune is None:
            return super().learning_rate()
        base = float(self.settings["learning_rate"])
        return tf_keras.optimizers.schedules.PiecewiseConstantDecay(
            [self.pretrain], [base, float(finetune)]
        )
