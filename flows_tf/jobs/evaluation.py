"""Evaluation science: a trained job measured on its test split (or energy target), written
as the flat metrics JSON and the per-example values beside it (no tracking)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flows_tf.jobs import record
from flows_tf.jobs.logs import say

if TYPE_CHECKING:
    import numpy as np
    from tensorflow_probability import distributions as tfd

    from flows_tf.experiment import Job

__all__ = ["EVALUATION_DEFAULTS", "MEASUREMENT_SETTINGS", "evaluate_model", "measurement_settings"]

EVALUATION_DEFAULTS = {
    "batch_size": 4096,  # rows per compiled log_prob call
    "n_samples": 2000,  # samples.npy
    "vi_samples": 10000,  # Monte Carlo samples for ELBO / KL / ESS
    "timing_n": 1000,  # rows per timed call of the serial time_models step (flows_tf.timing)
    "timing_repeats": 15,
    "grid_n": 200,  # density_grid.npz resolution (2-D flows)
}


MEASUREMENT_SETTINGS = ("batch_size", "vi_samples")  # the settings evaluate_model reads


def measurement_settings(evaluation: dict | None) -> dict:
    """The :data:`MEASUREMENT_SETTINGS` of ``evaluation``, defaults filled in, and no other:
    a setting the measurement starts to read must be named there, where the evaluate step's
    fingerprint (:mod:`flows_tf.jobs.draft`) takes it from."""
    ev = {**EVALUATION_DEFAULTS, **(evaluation or {})}
    return {k: ev[k] for k in MEASUREMENT_SETTINGS}


def _reported_loglik(
    flow: tfd.TransformedDistribution, test: np.ndarray, meta: dict, batch_size: int
) -> tuple[dict, np.ndarray]:
    """Test log-likelihood metrics and per-example values (float64, nats) in the reported space:
    pixel space for images (with ``test_loglik_model`` and ``bits_per_dim``), else model space."""
    import numpy as np

    from flows_tf import datasets, evaluate

    ll = evaluate.loglik(flow, test, batch_size=batch_size)
    per_example = ll.pop("per_example")
    if not meta.get("pixel_space"):
        return ll, per_example
    pixel = np.asarray(datasets.pixel_loglik(meta, test, per_example), np.float64)
    return {
        "test_loglik": float(np.mean(pixel)),
        "test_loglik_se": float(np.std(pixel, ddof=1) / np.sqrt(len(pixel))),
        "n_test": len(pixel),
        "test_loglik_model": ll["test_loglik"],
        "bits_per_dim": float(np.mean(datasets.bits_per_dim(meta, pixel))),
    }, pixel


def _mixture_components(dataset: str) -> dict | None:
    """Means, scales and weights of a toy mixture (for per-mode sample fractions), else None."""
    from flows_tf.datasets import DATASETS
    from flows_tf.datasets.toy import mixture_components

    info = DATASETS.get(dataset)
    return mixture_components(dataset) if info is not None and info.kind == "toy" else None


def _student_metrics(
    job: Job,
    flow: tfd.TransformedDistribution,
    test: np.ndarray,
    meta: dict,
    ev: dict,
    teacher_dir: str | Path | None,
) -> dict:
    """A distilled student against its teacher; ``teacher_test_loglik`` in the student's space."""
    from flows_tf import evaluate

    teacher = record.load_teacher(teacher_dir)
    out = evaluate.student_metrics(
        flow,
        teacher,
        n=int(ev["vi_samples"]),
        seed=job.seed,
        components=_mixture_components(job.dataset),
    )
    teacher_ll = _reported_loglik(teacher, test, meta, int(ev["batch_size"]))[0]
    out["teacher_test_loglik"] = teacher_ll["test_loglik"]
    return out


def _data_metrics(
    job: Job,
    flow: tfd.TransformedDistribution,
    test: np.ndarray,
    meta: dict,
    ev: dict,
) -> tuple[dict, np.ndarray]:
    """Metrics of a flow trained on data (or distilled) on the test split, and per-example
    test log-likelihoods."""
    import numpy as np

    from flows_tf import datasets

    metrics, per_example = _reported_loglik(flow, test, meta, int(ev["batch_size"]))
    true = datasets.true_log_prob(job.dataset, test, **job.dataset_options)
    if true is not None:
        metrics["true_test_loglik"] = float(np.mean(true))
    return metrics, per_example


def _measure(
    job: Job,
    flow: tfd.TransformedDistribution,
    data_dir: str | Path | None,
    ev: dict,
    teacher_dir: str | Path | None,
) -> tuple[dict, np.ndarray]:
    """The measured metrics and per-example test values (empty for an energy target)."""
    import numpy as np

    from flows_tf import datasets, evaluate

    if not job.on_data:
        target = datasets.energy_target(job.dataset)
        found = evaluate.vi_metrics(flow, target, n=int(ev["vi_samples"]), seed=job.seed)
        return found, np.zeros(0, np.float64)
    meta, data = record.load_splits(job, data_dir, ("test",))
    metrics, per_example = _data_metrics(job, flow, data["test"], meta, ev)
    if job.teacher is not None:
        metrics.update(_student_metrics(job, flow, data["test"], meta, ev, teacher_dir))
    return metrics, per_example


def _header(
    job: Job,
    flow: tfd.TransformedDistribution,
    summary: dict,
    model_dir: Path,
    loglik_file: str,
    threads: dict | None,
) -> dict:
    """The metrics JSON before measuring: identity, training summary, every metric missing."""
    from flows_tf import evaluate

    nan = float("nan")
    return {
        "dataset": job.dataset,
        "flow": job.flow,
        "builder": job.builder,
        "seed": job.seed,
        "objective": job.objective,
        "teacher": job.teacher,
        "job_key": job.key,
        "n_params": evaluate.n_params(flow),
        "train_seconds": summary["train_seconds"],
        "best_val_loglik": summary.get("best_val_loglik", nan),
        "final_loss": summary.get("final_loss", nan),
        "steps": summary.get("steps"),
        "converged": summary.get("converged"),
        "stopped_by": summary.get("stopped_by"),
        "mlflow_run_id": summary["mlflow_run_id"],
        "model_dir": str(model_dir),
        "loglik_file": loglik_file,
        **dict.fromkeys(("test_loglik", "test_loglik_se", "true_test_loglik", "bits_per_dim"), nan),
        **dict.fromkeys(("elbo", "kl_to_target", "kl_to_target_se", "ess"), nan),
        **dict.fromkeys(("teacher_test_loglik", "kl_to_teacher"), nan),
        "threads": dict(threads or {}),
        "train_threads": summary.get("threads", {}),
    }


def evaluate_model(
    job: Job,
    *,
    data_dir: str | Path | None,
    model_dir: str | Path,
    metrics_path: str | Path,
    threads: dict | None = None,
    teacher_dir: str | Path | None = None,
    evaluation: dict | None = None,
) -> dict:
    """Evaluate a trained job; write its metrics JSON and per-example values. No tracking.

    The metrics JSON is flat: dataset, flow, builder, seed, objective, teacher, n_params,
    test_loglik, test_loglik_se, n_test, true_test_loglik, train_seconds, best_val_loglik /
    final_loss (from ``train.json``), bits_per_dim and test_loglik_model (images), elbo /
    kl_to_target / kl_to_target_se / ess (VI), teacher_test_loglik / kl_to_teacher (students),
    loglik_file, mlflow_run_id (from ``train.json``), model_dir and the threads used. Missing
    quantities are ``null``. Timing is not measured here (the serial ``time_models`` step
    does it).

    Beside it, ``loglik_file`` (:func:`~flows_tf.jobs.per_example_path`, a name in the same
    folder) holds the per-example test log-likelihoods, float64 nats in the space of
    ``test_loglik`` (empty for energy targets, which have no test set).
    """
    from flows_tf import evaluate

    ev = measurement_settings(evaluation)
    model_dir, metrics_path = Path(model_dir), Path(metrics_path)
    summary = record.read_summary(model_dir, job)
    flow = evaluate.host(record.load_model(model_dir), record.read_spec(model_dir))
    loglik_path = record.per_example_path(metrics_path)
    metrics = _header(job, flow, summary, model_dir, loglik_path.name, threads)
    say(f"evaluating {job.key}")
    found, per_example = _measure(job, flow, data_dir, ev, teacher_dir)
    metrics.update(found)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    record.save_per_example(loglik_path, per_example)
    record.write_json(metrics_path, metrics)
    return metrics
