"""Training science: a job's inputs, its fit, and the record files it leaves (no tracking).

:func:`train_model` writes ``model/``, ``model_spec.json``, ``history.csv``, ``samples.npy``,
``density_grid.npz`` (2-D only) and last ``train.json``; ``checkpoints/`` lets a killed call
resume (they hold the history so far).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows_tf import experiment as _experiment
from flows_tf import modelio
from flows_tf.jobs import record
from flows_tf.jobs.evaluation import EVALUATION_DEFAULTS
from flows_tf.jobs.logs import say

if TYPE_CHECKING:
    from tensorflow_probability import distributions as tfd

    from flows_tf.experiment import Job
    from flows_tf.train import TrainResult

__all__ = ["TrainInputs", "load_train_inputs", "next_seed_inputs", "train_model"]


@dataclass(frozen=True)
class TrainInputs:
    """What a training job reads before it starts (a bad file stops it before any run opens).

    ``data`` maps split names to arrays (empty for an energy target, whose ``target`` is the
    callable); ``meta`` is the data set's ``meta.json`` (None for an energy target); ``teacher``
    the loaded teacher flow (distillation only); ``source`` the data folder's URI;
    ``data_hash`` the content hash of the data (energy targets: their name).
    """

    event_shape: tuple
    data_hash: str
    data: dict = field(default_factory=dict)
    meta: dict | None = None
    target: Any = None
    teacher: Any = None
    source: str | None = None


def _data_hash(meta: dict | None, job: Job) -> str:
    if meta is None:
        return f"energy:{job.dataset}"
    return meta.get("content_hash") or _experiment.stable_hash(meta.get("sha256") or meta)


def load_train_inputs(
    job: Job, data_dir: str | Path | None, teacher_dir: str | Path | None = None
) -> TrainInputs:
    """The train and val splits (or the energy target) and the teacher of ``job``."""
    meta, data = record.load_splits(job, data_dir, ("train", "val"))
    if not job.on_data:
        from flows_tf.datasets import energy_target

        target, event_shape = energy_target(job.dataset), (2,)
    else:
        target, event_shape = None, tuple(data["train"].shape[1:])
    teacher = record.load_teacher(teacher_dir) if job.teacher is not None else None
    source = None if meta is None else str(Path(data_dir).resolve().as_uri())
    return TrainInputs(event_shape, _data_hash(meta, job), data, meta, target, teacher, source)


def next_seed_inputs(
    job: Job,
    previous: TrainInputs | None,
    data_dir: str | Path | None,
    teacher_dir: str | Path | None,
) -> TrainInputs:
    """The inputs of ``job`` when ``previous`` were its variant's last seed's: the same object
    (the data read once, so that the seeds share compiled steps), with its own teacher."""
    if previous is None:
        return load_train_inputs(job, data_dir, teacher_dir)
    if job.teacher is None:
        return previous
    return replace(previous, teacher=record.load_teacher(teacher_dir))


def _fit(
    job: Job, inputs: TrainInputs, model_dir: Path, log: Callable | None, shared: dict | None
) -> tuple[tfd.TransformedDistribution, TrainResult]:
    """Seed, build, initialise and train the flow (resuming ``model_dir/checkpoints``)."""
    from flows_tf import train
    from flows_tf.flows import build_flow, initialize

    data = inputs.data
    train.set_seeds(job.seed)
    flow = build_flow(job.builder, inputs.event_shape, **job.hparams)
    if data:
        initialize(flow, data["train"][: min(len(data["train"]), 1024)])
    result = train.fit(
        flow,
        job.method,
        train=data.get("train"),
        val=data.get("val"),
        pixel_space=(inputs.meta or {}).get("pixel_space"),
        target=inputs.target,
        teacher=inputs.teacher,
        settings=job.training,
        workdir=model_dir,
        seed=job.seed,
        log=log,
        progress=say,
        shared=shared,
    )
    return flow, result


def _write_model_files(
    job: Job,
    flow: tfd.TransformedDistribution,
    event_shape: tuple,
    result: TrainResult,
    model_dir: Path,
    ev: dict,
) -> None:
    """``model/``, ``model_spec.json``, ``history.csv``, ``samples.npy``, ``density_grid.npz``."""
    import numpy as np

    from flows_tf import evaluate

    spec = modelio.make_spec(job.builder, event_shape, job.hparams)
    modelio.save_flow(flow, model_dir / "model")
    record.write_spec(model_dir, spec)
    record.write_history(model_dir / "history.csv", result.history)
    flow = evaluate.host(flow, spec)  # the variant's first flow, when its traces are reused
    samples = flow.sample(int(ev["n_samples"]), seed=job.seed).numpy()
    np.save(model_dir / "samples.npy", samples)
    if int(np.prod(event_shape)) == 2:
        xs, ys, logp = evaluate.density_grid(flow, n=int(ev["grid_n"]))
        np.savez(model_dir / "density_grid.npz", xs=xs, ys=ys, logp=logp)


def _summary(
    job: Job, inputs: TrainInputs, result: TrainResult, threads: dict, run_id: str | None
) -> dict:
    """What ``train.json`` holds."""
    from flows_tf.objectives import OBJECTIVES

    validated = OBJECTIVES[job.method].validates and inputs.data.get("val") is not None
    return {
        **job.to_dict(),
        "job_key": job.key,
        "config_hash": job.config_hash,
        "mlflow_run_id": run_id,
        "train_seconds": result.seconds,
        "first_call_seconds": result.first_call_seconds,
        "steps": result.steps,
        "epochs": result.epochs,
        "best_val_loglik": result.best_score if validated else None,
        "final_loss": result.final_loss,
        "converged": result.converged,
        "stopped_by": result.stopped_by,
        "resumed": result.resumed,
        "retries": result.retries,
        "lr_decays": result.lr_decays,
        "threads": threads,
        "event_shape": list(inputs.event_shape),
        "data_hash": inputs.data_hash,
    }


def train_model(
    job: Job,
    inputs: TrainInputs,
    model_dir: str | Path,
    *,
    threads: dict | None = None,
    evaluation: dict | None = None,
    run_id: str | None = None,
    resume: bool = True,
    log: Callable[[int, dict], None] | None = None,
    shared: dict | None = None,
) -> dict:
    """Train ``job`` on ``inputs`` and write its record to ``model_dir``; returns ``train.json``.

    Needs no tracking store. Rerun after a kill, it resumes from ``model_dir/checkpoints``.

    Args:
        job: the :class:`~flows_tf.experiment.Job`.
        inputs: from :func:`load_train_inputs`.
        model_dir: the job's model folder (created).
        threads: what :func:`flows_tf.runtime.configure` returned, recorded in the summary.
        evaluation: overrides of :data:`EVALUATION_DEFAULTS` (samples and density grid).
        run_id: the MLflow run the record belongs to (``mlflow_run_id``; None: none).
        resume: continue the checkpoints in ``model_dir``; False removes them first.
        log: ``log(step, metrics)`` at every evaluation (e.g. a run's live metrics).
        shared: what the seeds of one variant trained in one process share
            (:func:`flows_tf.train.fit`'s ``shared``; with the same ``inputs`` object).
    """
    ev = {**EVALUATION_DEFAULTS, **(evaluation or {})}
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    flow, result = _fit(job, inputs, model_dir, log, shared)
    _write_model_files(job, flow, inputs.event_shape, result, model_dir, ev)
    summary = _summary(job, inputs, result, dict(threads or {}), run_id)
    record.write_json(model_dir / record.SUMMARY_FILE, summary)
    return summary
