"""Objectives as objects: what each needs, its compiled step's inputs, its score, its record.

An objective turns a block of training steps ``t0 .. t0+k-1`` into tensors (:meth:`block`),
gives the loss of one step from one slice of that block (:meth:`loss`, traced inside the
compiled loop of :func:`flows_tf.train.fit`), and scores the run at each evaluation
(:meth:`score`, higher is better; ``None`` while scores are not comparable). ``fit`` knows
nothing else about it. Minibatch order and Monte Carlo seeds are pure functions of
``(seed, step)``, so a resumed run sees exactly the inputs of an uninterrupted one.
"""

import numpy as np
import tensorflow as tf
import tf_keras

from flows_tf import evaluate, flows, objectives

__all__ = [
    "OBJECTIVE_CLASSES",
    "Distill",
    "DistillPaired",
    "MaximumLikelihood",
    "Objective",
    "ReverseKL",
]


def _as_data(x, name, flow):
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

    def __init__(self, flow, settings: dict, seed: int, **inputs):
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

    def learning_rate(self):
        """The base learning rate: constant, or cosine to 0 at the step cap."""
        base = float(self.settings["learning_rate"])
        if self.settings["lr_schedule"] == "cosine":
            return tf_keras.optimizers.schedules.CosineDecay(base, decay_steps=self.total_steps)
        return base

    def block(self, start: int, k: int) -> tuple:
        """The inputs of steps ``start .. start+k-1``, each with a leading axis of ``k``."""
        raise NotImplementedError

    def loss(self, *step_inputs):
        """Scalar loss of one step (traced once inside the compiled loop)."""
        raise NotImplementedError

    def score(self, step: int, train_loss: float) -> float | None:
        """Score of the run at an evaluation; higher is better; None: not comparable yet."""
        raise NotImplementedError

    def where(self, step: int) -> str:
        """Position shown in progress lines beside the step (e.g. the epoch)."""
        return ""

    def record(self, step: int, train_loss: float, score: float | None) -> dict:
        """One history row (also logged as metrics)."""
        return {"step": step, "train_loss": train_loss}


class MaximumLikelihood(Objective):
    """``min -(1/B) sum_b log q(x_b)`` over shuffled minibatches of ``train``.

    Epoch ``e`` visits ``train`` in the order ``permutation(rng(seed, e))``; the score is the
    mean validation log-likelihood (without ``val``: none, so no early stopping).
    """

    name, needs, required = "mle", ("train", "val"), ("train",)

    def __init__(self, flow, settings, seed, *, train=None, val=None, **_):
        super().__init__(flow, settings, seed, train=train)
        train = _as_data(train, "train", flow)
        self.val = None if val is None else _as_data(val, "validation", flow)
        self.batch = min(self.batch, len(train))
        self.n_train = len(train)
        self.steps_per_epoch = len(train) // self.batch
        self.total_steps = int(settings["max_epochs"]) * self.steps_per_epoch
        self.eval_every = int(settings["eval_every"] or self.steps_per_epoch)
        self.signature = [tf.TensorSpec([None, self.batch], tf.int32)]
        self._train = tf.constant(train)
        self._train_rows = train
        self._log_prob = evaluate.compiled_log_prob(flow)
        self._order = (None, None)

    def initialize(self):
        flows.initialize(self.flow, self._train_rows[: self.batch])

    def _epoch_order(self, epoch):
        if self._order[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_train)
            self._order = (epoch, order.astype(np.int32))
        return self._order[1]

    def block(self, start, k):
        rows = []
        for t in range(start, start + k):
            epoch, b = divmod(t, self.steps_per_epoch)
            rows.append(self._epoch_order(epoch)[b * self.batch : (b + 1) * self.batch])
        return (np.stack(rows),)

    def loss(self, index):
        return objectives.mle_loss(self.flow, tf.gather(self._train, index))

    def score(self, step, train_loss):
        if self.val is None:
            return None
        batches = self.settings["eval_batch_size"]
        return float(np.mean(evaluate.batched(self._log_prob, self.val, batches)))

    def where(self, step):
        return f"epoch {step // self.steps_per_epoch}/{self.settings['max_epochs']}"

    def record(self, step, train_loss, score):
        return {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "train_loss": train_loss,
            "val_loglik": score,
        }


class _Sampled(Objective):
    """Objectives on the flow's own samples: step ``t`` draws with the stateless seed
    ``(seed, t)`` at inverse temperature ``beta_t`` (:func:`objectives.anneal_beta`)."""

    def __init__(self, flow, settings, seed, **inputs):
        super().__init__(flow, settings, seed, **inputs)
        self.total_steps = int(settings["steps"])
        self.eval_every = int(settings["eval_every"] or 100)
        self.anneal_steps = int(settings["anneal_steps"])
        self.signature = [tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([None], tf.float64)]

    def block(self, start, k):
        steps = np.arange(start, start + k)
        seeds = np.stack([np.full(k, self.seed % 2**31), steps], axis=1).astype(np.int32)
        betas = np.array([float(objectives.anneal_beta(int(t), self.anneal_steps)) for t in steps])
        return seeds, betas

    def score(self, step, train_loss):
        """Minus the window's mean loss, once annealing is over (earlier losses are tempered)."""
        return None if step - self.eval_every < self.anneal_steps else -train_loss

    def record(self, step, train_loss, score):
        beta = float(objectives.anneal_beta(step - 1, self.anneal_steps))
        return {"step": step, "train_loss": train_loss, "beta": beta}


class ReverseKL(_Sampled):
    """Variational inference: ``min E_q[log q(x) - beta_t log p~(x)]`` against ``target``."""

    name, needs, required = "vi", ("target",), ("target",)

    def __init__(self, flow, settings, seed, *, target=None, **_):
        super().__init__(flow, settings, seed, target=target)
        self.target = target

    def loss(self, step_seed, beta):
        return objectives.reverse_kl_loss(
            self.flow, self.target, self.batch, beta=beta, seed=step_seed
        )


class Distill(_Sampled):
    """Density distillation (Parallel WaveNet): ``min KL(S || T)`` on the student's samples.

    Mode-seeking: a student that misses a fraction ``m`` of the teacher's mass pays only
    ``-log(1 - m)``, and a mode without student samples sends no gradient.
    """

    name, needs, required = "distill", ("teacher",), ("teacher",)

    def __init__(self, flow, settings, seed, *, teacher=None, **_):
        super().__init__(flow, settings, seed, teacher=teacher)
        self.teacher = teacher

    def loss(self, step_seed, beta):
        return objectives.distillation_loss(
            self.flow, self.teacher, self.batch, beta=beta, seed=step_seed
        )


class DistillPaired(Distill):
    """Paired distillation, then reverse KL with a mass-covering forward term.

    Stage 1 (``t < pretrain_steps``): regress the student's map onto the teacher's on a cached
    bank of pairs, ``min (1/B) sum_b ||S(z_b) - T(z_b)||^2`` (Baranchuk et al. 2021). Stage 2:
    ``min KL(S || T) + lambda_f E_{x ~ T}[-log S(x)] + lambda_a (1/B) sum_b ||S(z_b) - T(z_b)||^2``
    with ``x`` a sub-batch of ``forward_batch`` bank samples: the forward term runs the student's
    sequential inverse on that bounded sub-batch only. Scores (and early stopping) start with
    stage 2. The bank is drawn once from ``(seed, BANK_STREAM)``, so a resumed run sees the
    same pairs.
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

    def __init__(self, flow, settings, seed, *, teacher=None, **_):
        from flows_tf import distill_bank

        super().__init__(flow, settings, seed, teacher=teacher)
        self.pretrain = int(settings["pretrain_steps"])
        self.bank = distill_bank.build_teacher_pairs(teacher, int(settings["bank_size"]), seed=seed)
        self._draw = distill_bank.draw_pairs

    def _paired(self, step_seed):
        z, x = self._draw(self.bank, self.batch, step_seed)
        return objectives.paired_regression_loss(self.flow, z, x)

    def _covering(self, step_seed, beta):
        s = self.settings
        loss = objectives.distillation_loss(
            self.flow, self.teacher, self.batch, beta=beta, seed=step_seed
        )
        sub_seed = tf.stack([step_seed[0], step_seed[1] + 2**30])  # another stream than the KL's
        _, x = self._draw(self.bank, int(s["forward_batch"]), sub_seed)
        loss += s["forward_weight"] * objectives.forward_kl_loss(self.flow, x)
        if s["anchor_weight"]:
            loss += s["anchor_weight"] * self._paired(step_seed)
        return loss

    def loss(self, step_seed, beta):
        return tf.cond(
            tf.cast(step_seed[1], tf.int64) < self.pretrain,
            lambda: tf.cast(self._paired(step_seed), tf.float64),
            lambda: tf.cast(self._covering(step_seed, beta), tf.float64),
        )

    def score(self, step, train_loss):
        return None if step - self.eval_every < self.pretrain else super().score(step, train_loss)

    def learning_rate(self):
        """``learning_rate`` while pretraining, then ``finetune_learning_rate``."""
        finetune = self.settings["finetune_learning_rate"]
        if finetune is None:
            return super().learning_rate()
        base = float(self.settings["learning_rate"])
        return tf_keras.optimizers.schedules.PiecewiseConstantDecay(
            [self.pretrain], [base, float(finetune)]
        )


OBJECTIVE_CLASSES = {
    cls.name: cls for cls in (MaximumLikelihood, ReverseKL, Distill, DistillPaired)
}
