"""A job's record mirrored into MLflow: the job's run opened from plain data, then the record
files copied into it. The only module of :mod:`flows_tf.jobs` that uses :mod:`flows_tf.tracking`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from flows_tf import tracking
from flows_tf.jobs import record
from flows_tf.jobs.logs import say

if TYPE_CHECKING:
    from flows_tf.experiment import Job

__all__ = [
    "job_params",
    "log_evaluation",
    "mirror_evaluation",
    "mirror_training",
    "open_run",
    "run_tags",
]


def job_params(job: Job, threads: dict) -> dict:
    """What MLflow records as params: the job's config plus the thread settings."""
    return {**job.to_dict(), "threads": threads, "job_key": job.key}


def run_tags(job: Job) -> dict:
    """The job's descriptive tags on its MLflow run: the grid keys, builder and teacher."""
    tags = {
        "dataset": job.dataset,
        "flow": job.flow,
        "builder": job.builder,
        "seed": job.seed,
        "objective": job.objective,
    }
    if job.teacher:
        tags["teacher"] = job.teacher
    return tags


def open_run(
    job: Job,
    experiment: str,
    model_dir: str | Path,
    *,
    rule: str | None = None,
    data_hash: str | None = None,
) -> contextlib.AbstractContextManager[tracking.RunLogger]:
    """:func:`flows_tf.tracking.job_run` for ``job``: its key, config hash and tags."""
    return tracking.job_run(
        job.key,
        experiment,
        model_dir,
        config_hash=job.config_hash,
        data_hash=data_hash,
        rule=rule,
        tags=run_tags(job),
    )


def _final_metrics(summary: dict) -> dict:
    out = {k: summary[k] for k in ("train_seconds", "steps", "epochs", "final_loss")}
    out["converged"] = int(summary["converged"])
    for name in ("best_val_loglik", "first_call_seconds"):
        if summary.get(name) is not None:
            out[name] = summary[name]
    return out


def mirror_training(run: tracking.RunLogger, model_dir: str | Path) -> None:
    """Mirror a training record into its open run.

    The final metrics of ``train.json`` at its last step, ``history.csv`` and ``train.json``
    as artifacts, the model as a pyfunc; on a resumed run first the history values the run
    lacks (metrics a killed attempt had buffered but not sent; its checkpoint kept them).
    """
    model_dir = Path(model_dir)
    summary = json.loads((model_dir / record.SUMMARY_FILE).read_text())
    history = model_dir / "history.csv"
    run.flush()
    if run.resumed and (sent := run.log_missing(record.read_history(history))):
        say(f"MLflow run {run.run_id}: {sent} history values a killed attempt had not sent")
    run.log_metrics(_final_metrics(summary), step=summary["steps"], flush=True)
    run.log_artifact(history)
    run.log_model(model_dir / "model", model_dir / record.SPEC_FILE)
    run.log_artifact(model_dir / record.SUMMARY_FILE)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def log_evaluation(
    run: tracking.RunLogger, metrics_path: str | Path, *, metrics_file: str | Path | None = None
) -> None:
    """Log an evaluation record to an open run: its numbers (but the seed) as metrics at the
    training's last step; the metrics JSON and per-example values as artifacts; the tag
    ``metrics_file``, where it is published (default ``metrics_path``)."""
    metrics_path = Path(metrics_path)
    metrics = json.loads(metrics_path.read_text())
    numeric = {k: v for k, v in metrics.items() if _is_number(v) and k != "seed"}
    run.log_metrics(numeric, step=int(metrics.get("steps") or 0), flush=True)
    run.set_tags({"metrics_file": str(metrics_file or metrics_path)})
    run.log_artifact(metrics_path)
    run.log_artifact(record.per_example_path(metrics_path))


def mirror_evaluation(metrics_path: str | Path, *, rule: str = "evaluate") -> None:
    """Add an evaluation record to the MLflow run it names (:func:`log_evaluation`), the rule
    as ``snakemake_rule_last``."""
    metrics_path = Path(metrics_path)
    run_id = json.loads(metrics_path.read_text()).get("mlflow_run_id")
    if not run_id:
        raise tracking.TrackingError(f"{metrics_path} names no MLflow run (mlflow_run_id)")
    with tracking.reopen_run(run_id, rule=rule) as run:
        log_evaluation(run, metrics_path)
