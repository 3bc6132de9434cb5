"""Training loop: minibatch Adam, early stopping, checkpoints, resume, divergence handling.

:func:`fit` trains one flow with one objective (``mle``, ``vi`` or ``distill``, see
:mod:`flows_tf.objectives`). Everything that defines where a run stands (weights, Adam's moments,
step and epoch counters, best-so-far, patience counter, learning-rate scale, history) lives in a
``tf.train.Checkpoint`` under ``workdir/checkpoints``, written every ``checkpoint_every`` steps
and at each epoch end, so a killed job rerun with the same arguments continues where it stopped
and reaches the same weights as an uninterrupted run. The step is a ``tf.function`` with a fixed
input signature (traced once); minibatch order and Monte Carlo seeds are pure functions of
``(seed, epoch)`` and ``(seed, step)``.

The optimizer is ``tf_keras.optimizers.Adam``: TFP's ``AutoregressiveNetwork`` keeps its MADE
masks through kernel constraints, which only a Keras optimizer that applies constraints honours.
"""

import json
import math
import pathlib
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tf_keras

from flows_tf import evaluate, flows, objectives

__all__ = [
    "DEFAULT_SETTINGS",
    "TrainResult",
    "TrainingDiverged",
    "check_settings",
    "fit",
    "restore_flow",
    "set_seeds",
]

DEFAULT_SETTINGS = {
    "batch_size": 256,  # minibatch (mle) or Monte Carlo sample size (vi, distill)
    "learning_rate": 1e-3,
    "max_epochs": 100,  # mle
    "patience": 10,  # mle: epochs without a better validation log-likelihood; None: never stop
    "weight_decay": 0.0,  # decoupled (AdamW-style), 0: off
    "lr_schedule": "constant",  # or "cosine" (to 0 over the run's total steps)
    "steps": 1000,  # vi, distill
    "anneal_steps": 0,  # vi, distill: T of beta_t = min(1, 0.01 + t/T); 0: no annealing
    "checkpoint_every": 500,  # steps; checkpoints are also written at each epoch end
    "on_nonfinite": "fail",  # or "retry": restore the last checkpoint and halve the lr
    "max_retries": 3,
    "clip_norm": None,  # global gradient-norm clipping, None: off
    "log_every": 100,  # vi, distill: steps between metric records (mle: once per epoch)
    "progress_seconds": 10.0,  # at most one progress line per this many seconds
    "eval_batch_size": 4096,  # validation log-likelihood batches
}

# settings that do not change the trained weights, so a resumed run may change them
_FREE_ON_RESUME = (
    "checkpoint_every",
    "on_nonfinite",
    "max_retries",
    "progress_seconds",
    "eval_batch_size",
)
_SCHEDULES = ("constant", "cosine")
_NONFINITE = ("fail", "retry")


class TrainingDiverged(RuntimeError):
    """The loss (or its gradient, or the validation score) became non-finite."""


@dataclass
class TrainResult:
    """Summary of a finished :func:`fit`.

    ``best_val`` is the best mean validation log-likelihood (mle with ``val``), else the final
    training log-likelihood (mle without ``val``) or the final mean loss (vi, distill).
    ``seconds`` sums the training time over every attempt of a resumed run.
    """

    steps: int
    epochs: int
    seconds: float
    best_val: float
    history: list[dict]
    resumed: bool
    stopped_early: bool
    resumed_from_step: int = 0
    retries: int = 0
    traces: int = 0  # times the train step was traced in this call (1 when shapes are fixed)
    threads: dict = field(default_factory=dict)


class _Diverged(Exception):
    def __init__(self, step, what, value):
        super().__init__(f"non-finite {what} ({value}) at step {step}")
        self.step, self.what, self.value = step, what, value


class _State(tf.Module):
    """Counters and best-so-far weights, saved with the flow and the optimizer."""

    def __init__(self, variables):
        super().__init__(name="train_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # completed epochs
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False)  # batches this epoch
        self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # since last record
        self.best_val = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
        self.final_loss = tf.Variable(np.nan, dtype=tf.float64, trainable=False)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False)
        self.retries = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.done = tf.Variable(False, trainable=False)
        self.stopped_early = tf.Variable(False, trainable=False)
        self.history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.best = [tf.Variable(v, trainable=False) for v in variables]


class _ScaledSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """``lr_t = scale * base(t)``; ``scale`` is halved on each divergence retry."""

    def __init__(self, base, scale):
        super().__init__()
        self.base, self.scale = base, scale

    def __call__(self, step):
        base = self.base(step) if callable(self.base) else self.base
        return tf.cast(base, tf.float32) * self.scale

    def get_config(self):
        return {}


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow; call before building the flow."""
    tf_keras.utils.set_random_seed(int(seed))


def restore_flow(flow, workdir) -> int:
    """Load the weights of the latest checkpoint of a :func:`fit` run; returns its step.

    After a finished mle run with validation data these are the best weights.
    """
    directory = pathlib.Path(workdir) / "checkpoints"
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    state = _State(flow.trainable_variables)
    tf.train.Checkpoint(flow=flow, state=state).restore(latest).expect_partial()
    return int(state.step.numpy())


def check_settings(settings: dict) -> dict:
    """Defaults merged with ``settings``; unknown keys or bad values raise ``ValueError``."""
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **settings}
    for key in ("batch_size", "max_epochs", "steps", "checkpoint_every", "log_every"):
        if not isinstance(s[key], int | np.integer) or s[key] < 1:
            raise ValueError(f"training setting {key!r} must be a positive integer, got {s[key]!r}")
    for key in ("max_retries", "anneal_steps"):
        if not isinstance(s[key], int | np.integer) or s[key] < 0:
            raise ValueError(f"training setting {key!r} must be an integer >= 0, got {s[key]!r}")
    if s["patience"] is not None and (not isinstance(s["patience"], int) or s["patience"] < 1):
        raise ValueError(f"training setting 'patience' must be >= 1 or None, got {s['patience']!r}")
    if not s["learning_rate"] > 0:
        raise ValueError(f"training setting 'learning_rate' must be > 0, got {s['learning_rate']}")
    if s["weight_decay"] < 0:
        raise ValueError(f"training setting 'weight_decay' must be >= 0, got {s['weight_decay']}")
    if s["lr_schedule"] not in _SCHEDULES:
        raise ValueError(f"training setting 'lr_schedule' must be one of {_SCHEDULES}")
    if s["on_nonfinite"] not in _NONFINITE:
        raise ValueError(f"training setting 'on_nonfinite' must be one of {_NONFINITE}")
    return s


def _as_data(x, name, flow):
    x = np.asarray(x)
    dim = int(np.prod(flow.event_shape))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} data must have shape (N, {dim}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} data contains NaN or inf")
    return x.astype(flow.dtype.as_numpy_dtype)


def _hms(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def fit(
    flow,
    job_objective,
    *,
    train=None,
    val=None,
    target=None,
    teacher=None,
    settings,
    workdir,
    seed,
    log=None,
    progress=None,
) -> TrainResult:
    """Train ``flow`` with one objective, resuming from ``workdir/checkpoints`` when present.

    Objectives: ``mle`` minimises ``-log q(x)`` over epochs of ``train`` minibatches with early
    stopping on the mean validation log-likelihood (patience in epochs, best weights restored);
    ``vi`` minimises ``E_q[log q(x) - beta_t log p~(x)]`` against ``target`` for ``steps``
    steps; ``distill`` minimises ``KL(flow || teacher)`` on the flow's own samples.

    Args:
        flow: the model to train (its ``trainable_variables`` are updated in place).
        job_objective: ``"mle"``, ``"vi"`` or ``"distill"``.
        train, val: data arrays ``(N, D)`` (mle; ``val`` optional).
        target: callable ``(n, D) -> (n,)`` unnormalised log-density (vi).
        teacher: a trained flow (distill; not updated).
        settings: training settings, see ``DEFAULT_SETTINGS``; unknown keys raise ``ValueError``.
        workdir: directory of the run; checkpoints go to ``workdir/checkpoints``.
        seed: seeds minibatch order and Monte Carlo samples.
        log: ``log(step, metrics)`` once per epoch (mle) or every ``log_every`` steps.
        progress: ``progress(line)`` for human-readable progress lines.

    Returns:
        a :class:`TrainResult`.

    Raises:
        TrainingDiverged: non-finite loss, gradient or validation score (after ``max_retries``
            retries when ``on_nonfinite="retry"``); the message names the step.

    Example:
        >>> result = fit(flow, "mle", train=x_train, val=x_val, workdir=tmp,
        ...              settings={"max_epochs": 50}, seed=0)  # doctest: +SKIP
    """
    if job_objective not in objectives.OBJECTIVES:
        raise ValueError(f"unknown objective {job_objective!r}; known: {objectives.OBJECTIVES}")
    s = check_settings(dict(settings))
    seed = int(seed)
    workdir = pathlib.Path(workdir)
    ckpt_dir = workdir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: None)
    record = log or (lambda step, metrics: None)
    set_seeds(seed)

    variables = list(flow.trainable_variables)
    if not variables:
        raise ValueError("the flow has no trainable variables")
    dtype = flow.dtype
    batch = int(s["batch_size"])
    if job_objective == "mle":
        if train is None:
            raise ValueError("objective 'mle' needs train data")
        train = _as_data(train, "train", flow)
        val = None if val is None else _as_data(val, "validation", flow)
        batch = min(batch, len(train))
        steps_per_epoch = len(train) // batch
        total_steps = s["max_epochs"] * steps_per_epoch
    else:
        if job_objective == "vi" and target is None:
            raise ValueError("objective 'vi' needs a target")
        if job_objective == "distill" and teacher is None:
            raise ValueError("objective 'distill' needs a teacher")
        total_steps = s["steps"]

    state = _State(variables)
    base_lr = float(s["learning_rate"])
    if s["lr_schedule"] == "cosine":
        base_lr = tf_keras.optimizers.schedules.CosineDecay(base_lr, decay_steps=total_steps)
    schedule = _ScaledSchedule(base_lr, state.lr_scale)
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=schedule,
        weight_decay=float(s["weight_decay"]) or None,
        jit_compile=False,
    )
    optimizer.build(variables)
    ckpt = tf.train.Checkpoint(flow=flow, optimizer=optimizer, state=state)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)

    settings_file = ckpt_dir / "settings.json"
    run_key = {
        "objective": job_objective,
        "seed": seed,
        "settings": {k: v for k, v in s.items() if k not in _FREE_ON_RESUME},
    }
    resumed = manager.latest_checkpoint is not None
    if resumed:
        saved = json.loads(settings_file.read_text()) if settings_file.exists() else None
        if saved is not None and saved != json.loads(json.dumps(run_key)):
            changed = sorted(
                k for k, v in run_key["settings"].items() if saved["settings"].get(k) != v
            )
            raise ValueError(
                f"checkpoint in {ckpt_dir} was written by a run with other arguments "
                f"(changed: {changed or ['objective/seed']}); use a fresh workdir"
            )
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    else:
        if job_objective == "mle":
            flows.initialize(flow, train[:batch])  # data-dependent init (actnorm); else no-op
        settings_file.write_text(json.dumps(run_key, indent=1))
        manager.save(checkpoint_number=0)
    start_step = int(state.step.numpy())
    if resumed:
        say(f"[{job_objective}] resuming from step {start_step} (epoch {int(state.epoch.numpy())})")

    # ---- the compiled step --------------------------------------------------------------
    clip = s["clip_norm"]
    if job_objective == "mle":
        signature = [tf.TensorSpec([batch, train.shape[1]], dtype)]

        def loss_fn(x):
            return objectives.mle_loss(flow, x)
    else:  # vi and distill: the student's own samples at an annealed inverse temperature
        signature = [tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float64)]

        def loss_fn(step_seed, beta):
            if job_objective == "vi":
                return objectives.reverse_kl_loss(flow, target, batch, beta=beta, seed=step_seed)
            return objectives.distillation_loss(flow, teacher, batch, beta=beta, seed=step_seed)

    @tf.function(input_signature=signature)
    def train_step(*args):
        with tf.GradientTape() as tape:
            loss = loss_fn(*args)
        grads = tape.gradient(loss, variables)
        norm = tf.linalg.global_norm(grads)
        if clip:
            grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norm)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss, norm

    log_prob = evaluate.compiled_log_prob(flow)

    # ---- bookkeeping ------------------------------------------------------------------
    t0 = time.perf_counter()
    seconds0 = float(state.seconds.numpy())
    clock = {"last_line": -math.inf, "run_start_step": start_step}
    history = json.loads(state.history.numpy().decode())

    def save():
        state.seconds.assign(seconds0 + time.perf_counter() - t0)
        state.history.assign(json.dumps(history))
        manager.save(checkpoint_number=int(state.step.numpy()))

    def line(loss, val_ll=None, final=False):
        now = time.perf_counter()
        if not final and now - clock["last_line"] < s["progress_seconds"]:
            return
        clock["last_line"] = now
        step = int(state.step.numpy())
        done_here = max(1, step - clock["run_start_step"])
        eta = (now - t0) / done_here * max(0, total_steps - step)
        parts = [f"[{job_objective}] step {step}/{total_steps}"]
        if job_objective == "mle":
            parts.append(f"epoch {int(state.epoch.numpy())}/{s['max_epochs']}")
        parts.append(f"loss {loss:.4f}")
        if val_ll is not None:
            parts.append(f"val {val_ll:.4f}")
        parts += [f"elapsed {_hms(seconds0 + now - t0)}", "done" if final else f"eta {_hms(eta)}"]
        say(" ".join(parts))

    def checked_step(*args):
        loss, norm = train_step(*args)
        loss, norm = float(loss), float(norm)
        step = int(state.step.numpy()) + 1
        if not math.isfinite(loss):
            raise _Diverged(step, "loss", loss)
        if not math.isfinite(norm):
            raise _Diverged(step, "gradient norm", norm)
        state.step.assign_add(1)
        state.loss_sum.assign_add(loss)
        return loss

    def current_lr():
        return float(schedule(optimizer.iterations).numpy())

    def run_mle():
        while not bool(state.done.numpy()):
            epoch = int(state.epoch.numpy())
            if epoch >= s["max_epochs"]:
                break
            order = np.random.default_rng([seed, epoch]).permutation(len(train))
            loss = math.nan
            for b in range(int(state.epoch_step.numpy()), steps_per_epoch):
                loss = checked_step(train[order[b * batch : (b + 1) * batch]])
                state.epoch_step.assign(b + 1)
                if int(state.step.numpy()) % s["checkpoint_every"] == 0:
                    save()
                line(loss)
            train_loss = float(state.loss_sum.numpy()) / steps_per_epoch
            step = int(state.step.numpy())
            if val is not None:
                val_ll = float(np.mean(evaluate.batched(log_prob, val, s["eval_batch_size"])))
                if not math.isfinite(val_ll):
                    raise _Diverged(step, "validation log-likelihood", val_ll)
            else:
                val_ll = -train_loss
            if val_ll > float(state.best_val.numpy()):
                state.best_val.assign(val_ll)
                state.bad_epochs.assign(0)
                for best, v in zip(state.best, variables, strict=True):
                    best.assign(v)
            else:
                state.bad_epochs.assign_add(1)
            entry = {
                "step": step,
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loglik": val_ll if val is not None else None,
            }
            history.append(entry)
            record(
                step,
                {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "val_loglik": val_ll,
                    "best_val_loglik": float(state.best_val.numpy()),
                    "lr": current_lr(),
                },
            )
            state.final_loss.assign(train_loss)
            state.epoch.assign(epoch + 1)
            state.epoch_step.assign(0)
            state.loss_sum.assign(0.0)
            patience = s["patience"]
            if val is not None and patience is not None and int(state.bad_epochs) >= patience:
                state.stopped_early.assign(True)
                state.done.assign(True)
            line(train_loss, val_ll if val is not None else None)
            save()

    def run_sampled():
        log_every = s["log_every"]
        while int(state.step.numpy()) < total_steps:
            step = int(state.step.numpy())
            step_seed = tf.constant([seed % 2**31, step], tf.int32)
            beta = float(objectives.anneal_beta(step, s["anneal_steps"]))
            loss = checked_step(step_seed, tf.constant(beta, tf.float64))
            state.epoch_step.assign_add(1)
            line(loss)
            step += 1
            recorded = step % log_every == 0 or step == total_steps
            if recorded:
                mean_loss = float(state.loss_sum.numpy()) / int(state.epoch_step.numpy())
                history.append(
                    {
                        "step": step,
                        "epoch": 0,
                        "train_loss": mean_loss,
                        "val_loglik": None,
                        "beta": beta,
                    }
                )
                record(step, {"loss": mean_loss, "lr": current_lr(), "beta": beta})
                state.final_loss.assign(mean_loss)
                state.loss_sum.assign(0.0)
                state.epoch_step.assign(0)
            if recorded or step % s["checkpoint_every"] == 0:
                save()

    run = run_mle if job_objective == "mle" else run_sampled
    retries_here = 0
    while True:
        try:
            run()
            break
        except _Diverged as err:
            if s["on_nonfinite"] == "retry" and retries_here < s["max_retries"]:
                retries_here += 1
                ckpt.restore(manager.latest_checkpoint)
                history = json.loads(state.history.numpy().decode())
                state.retries.assign_add(1)
                state.lr_scale.assign(state.lr_scale * 0.5)
                say(
                    f"[{job_objective}] {err}; retry {retries_here}/{s['max_retries']} from "
                    f"step {int(state.step.numpy())} with learning rate x{state.lr_scale.numpy()}"
                )
                continue
            raise TrainingDiverged(
                f"training diverged: {err}"
                + (f" (after {retries_here} retries)" if retries_here else "")
            ) from None

    state.done.assign(True)
    if job_objective == "mle" and val is not None:
        for best, v in zip(state.best, variables, strict=True):
            v.assign(best)
        best_val = float(state.best_val.numpy())
    else:
        best_val = float(state.final_loss.numpy())
        best_val = -best_val if job_objective == "mle" else best_val
    save()  # the final checkpoint holds the returned weights (the best ones for mle with val)
    line(float(state.final_loss.numpy()), best_val if val is not None else None, final=True)
    return TrainResult(
        steps=int(state.step.numpy()),
        epochs=int(state.epoch.numpy()),
        seconds=float(state.seconds.numpy()),
        best_val=best_val,
        history=history,
        resumed=resumed,
        stopped_early=bool(state.stopped_early.numpy()),
        resumed_from_step=start_step,
        retries=int(state.retries.numpy()),
        traces=int(train_step.experimental_get_tracing_count()),
        threads={
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    )
