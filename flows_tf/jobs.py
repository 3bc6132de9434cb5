"""One benchmark job end to end: data -> flow -> fit -> files + MLflow run; then evaluation.

Glue only: :class:`flows_tf.experiment.Job` says what to run, :mod:`flows_tf.datasets` gives
the data, :func:`flows_tf.flows.build_flow` the model, :func:`flows_tf.train.fit` trains it,
:mod:`flows_tf.evaluate` measures it and :mod:`flows_tf.tracking` records it.

Files of a job (``model_dir = results/models/{dataset}/{flow}/seed{seed}``):
``train.json`` (summary), ``history.csv`` (step, epoch, train_loss, val_loglik),
``samples.npy``, ``density_grid.npz`` (2-D only: xs, ys, logp), ``model/`` (final weights),
``checkpoints/`` (resume), ``mlflow_run.json``; and the flat metrics JSON
``results/metrics/{dataset}/{flow}/seed{seed}.json``.

Call :func:`flows_tf.runtime.configure` before this module's functions start TensorFlow.

Example:
    >>> job = experiment.make_job(config, "two_moons", "maf", 0)  # doctest: +SKIP
    >>> train_job(job, data_dir="results/data/two_moons", model_dir=md, experiment="x")
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

from flows_tf import experiment as _experiment
from flows_tf import modelio, tracking

__all__ = [
    "EVALUATION_DEFAULTS",
    "train_job",
    "evaluate_job",
    "per_example_path",
    "rule_arguments",
    "log_to",
    "job_params",
]

EVALUATION_DEFAULTS = {
    "batch_size": 4096,  # rows per compiled log_prob call
    "n_samples": 2000,  # samples.npy
    "vi_samples": 10000,  # Monte Carlo samples for ELBO / KL / ESS
    "timing_n": 1000,  # rows per timed call of the serial time_models step (flows_tf.timing)
    "timing_repeats": 5,
    "grid_n": 200,  # density_grid.npz resolution (2-D flows)
}
HISTORY_COLUMNS = ("step", "epoch", "train_loss", "val_loglik")


@contextlib.contextmanager
def log_to(path):
    """Send stdout and stderr, TensorFlow's C++ logs and a failure's traceback to ``path``."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                try:
                    yield
                except BaseException:
                    traceback.print_exc(file=fh)
                    raise
        finally:
            fh.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def job_params(job, threads: dict) -> dict:
    """What MLflow records as params: the job's config plus the thread settings."""
    return {**job.to_dict(), "threads": threads, "job_key": job.key}


def _data_hash(meta: dict | None, job) -> str:
    """The content hash of the data a job saw (energy targets: their name)."""
    if meta is None:
        return f"energy:{job.dataset}"
    return meta.get("content_hash") or _experiment.stable_hash(meta.get("sha256") or meta)


def _load_data(job, data_dir, splits):
    from flows_tf import datasets

    if job.objective == "vi":
        return None, {}
    data_dir = Path(data_dir)
    meta = datasets.read_meta(data_dir)
    return meta, {s: datasets.read_split(data_dir, s) for s in splits}


def _read_spec(model_dir) -> dict:
    return json.loads((Path(model_dir) / "model_spec.json").read_text())


def _load_teacher(teacher_dir):
    if teacher_dir is None:
        raise ValueError("a distillation job needs the teacher's model directory")
    return modelio.load_flow(_read_spec(teacher_dir), Path(teacher_dir) / "model")


def _write_history(path: Path, history: list[dict]) -> None:
    extra = sorted({k for row in history for k in row} - set(HISTORY_COLUMNS))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*HISTORY_COLUMNS, *extra], restval="")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in (*HISTORY_COLUMNS, *extra)})


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def rule_arguments(sm) -> dict:
    """The job and paths a Snakemake train or evaluate rule hands to train_job / evaluate_job."""
    w = sm.wildcards
    inputs = sm.input.keys()
    return {
        "job": _experiment.make_job(sm.config, w.dataset, w.flow, int(w.seed)),
        "data_dir": Path(sm.input.meta).parent if "meta" in inputs else None,
        "teacher_dir": Path(sm.input.teacher).parent if "teacher" in inputs else None,
        "model_dir": sm.params.model_dir,
        "rule": sm.rule,
    }


def train_job(
    job,
    *,
    data_dir,
    model_dir,
    experiment: str,
    threads: dict | None = None,
    teacher_dir=None,
    rule: str = "train",
    evaluation: dict | None = None,
) -> dict:
    """Train one job, record it in MLflow and write its model folder; returns ``train.json``.

    Args:
        job: the :class:`~flows_tf.experiment.Job`.
        data_dir: ``results/data/{dataset}`` (ignored for energy targets).
        model_dir: the job's model folder (created).
        experiment: MLflow experiment name (created beforehand by ``init-mlflow``).
        threads: what :func:`flows_tf.runtime.configure` returned, recorded with the run.
        teacher_dir: the teacher's model folder (distillation only).
        rule: the Snakemake rule, recorded as a tag.
        evaluation: overrides of :data:`EVALUATION_DEFAULTS` (samples and density grid).
    """
    import numpy as np

    from flows_tf import evaluate, train
    from flows_tf.flows import build_flow, initialize

    ev = {**EVALUATION_DEFAULTS, **(evaluation or {})}
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    threads = dict(threads or {})
    meta, data = _load_data(job, data_dir, ("train", "val"))
    if job.objective == "vi":
        from flows_tf.datasets import energy_target

        target, event_shape = energy_target(job.dataset), (2,)
    else:
        target, event_shape = None, tuple(data["train"].shape[1:])
    teacher = _load_teacher(teacher_dir) if job.objective == "distill" else None

    _say(
        f"job {job.key}: {job.builder} {job.hparams} on {job.dataset} {event_shape}, "
        f"threads {threads}"
    )
    with tracking.job_run(
        job, experiment, model_dir, rule=rule, data_hash=_data_hash(meta, job)
    ) as run:
        if not run.resumed:  # a fresh run never continues stale checkpoints
            import shutil

            shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
        _say(
            f"MLflow run {run.run_id} ({'resumed' if run.resumed else 'new'}) "
            f"at {tracking.tracking_uri()}"
        )
        run.log_params(job_params(job, threads))
        if meta is not None:
            run.log_dataset(meta, context="train", source=str(Path(data_dir).resolve().as_uri()))
        train.set_seeds(job.seed)
        flow = build_flow(job.builder, event_shape, **job.hparams)
        if data:
            initialize(flow, data["train"][: min(len(data["train"]), 1024)])
        result = train.fit(
            flow,
            job.method,
            train=data.get("train"),
            val=data.get("val"),
            target=target,
            teacher=teacher,
            settings=job.training,
            workdir=model_dir,
            seed=job.seed,
            log=lambda step, metrics: run.log_metrics(metrics, step=step),
            progress=_say,
        )
        run.flush()
        has_val = job.objective == "mle" and data.get("val") is not None
        best_val_loglik = result.best_score if has_val else None
        modelio.save_flow(flow, model_dir / "model")
        spec = modelio.make_spec(job.builder, event_shape, job.hparams)
        _write_history(model_dir / "history.csv", result.history)
        samples = flow.sample(int(ev["n_samples"]), seed=job.seed).numpy()
        np.save(model_dir / "samples.npy", samples)
        if int(np.prod(event_shape)) == 2:
            xs, ys, logp = evaluate.density_grid(flow, n=int(ev["grid_n"]))
            np.savez(model_dir / "density_grid.npz", xs=xs, ys=ys, logp=logp)
        summary = {
            **job.to_dict(),
            "job_key": job.key,
            "config_hash": job.config_hash,
            "mlflow_run_id": run.run_id,
            "train_seconds": result.seconds,
            "steps": result.steps,
            "epochs": result.epochs,
            "best_val_loglik": best_val_loglik,
            "final_loss": result.final_loss,
            "converged": result.converged,
            "stopped_by": result.stopped_by,
            "resumed": result.resumed,
            "retries": result.retries,
            "threads": threads,
            "event_shape": list(event_shape),
            "data_hash": _data_hash(meta, job),
        }
        run.log_metrics(
            {
                "train_seconds": result.seconds,
                "steps": result.steps,
                "epochs": result.epochs,
                "final_loss": result.final_loss,
                "converged": int(result.converged),
                **({"best_val_loglik": best_val_loglik} if best_val_loglik is not None else {}),
            },
            step=result.steps,
            flush=True,
        )
        run.log_artifact(model_dir / "history.csv")
        run.log_model(model_dir, spec)
        _write_json(model_dir / "train.json", summary)
        run.log_artifact(model_dir / "train.json")
    _say(f"trained {job.key} in {result.seconds:.1f} s ({result.steps} steps)")
    return summary


def per_example_path(metrics_path) -> Path:
    """``.../seed{seed}.loglik.npy`` beside ``.../seed{seed}.json``: per-example test values."""
    metrics_path = Path(metrics_path)
    return metrics_path.with_name(metrics_path.stem + ".loglik.npy")


def _reported_loglik(flow, test, meta: dict, batch_size: int):
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


# under-load timing of student_metrics: the serial time_models step measures these instead
_NOT_FROM_EVALUATION = ("sampling_speedup", "teacher_sample_seconds_per_1k")


def _mixture_components(dataset: str) -> dict | None:
    """Means, scales and weights of a toy mixture (for per-mode sample fractions), else None."""
    from flows_tf.datasets import DATASETS
    from flows_tf.datasets.toy import mixture_components

    info = DATASETS.get(dataset)
    return mixture_components(dataset) if info is not None and info.kind == "toy" else None


def _data_metrics(job, flow, test, meta: dict, ev: dict, teacher_dir):
    """Metrics of a maximum-likelihood or distilled flow on the test split, and per-example
    test log-likelihoods; a student's ``teacher_test_loglik`` is in the student's space."""
    import numpy as np

    from flows_tf import datasets, evaluate

    batch_size = int(ev["batch_size"])
    metrics, per_example = _reported_loglik(flow, test, meta, batch_size)
    true = datasets.true_log_prob(job.dataset, test, **job.dataset_options)
    if true is not None:
        metrics["true_test_loglik"] = float(np.mean(true))
    if job.objective == "distill":
        teacher = _load_teacher(teacher_dir)
        diagnostics = evaluate.student_metrics(  # its timing is dropped: one round suffices
            flow,
            teacher,
            n=int(ev["vi_samples"]),
            seed=job.seed,
            timing_n=int(ev["timing_n"]),
            repeats=1,
            components=_mixture_components(job.dataset),
        )
        metrics.update({k: v for k, v in diagnostics.items() if k not in _NOT_FROM_EVALUATION})
        metrics["teacher_test_loglik"] = _reported_loglik(teacher, test, meta, batch_size)[0][
            "test_loglik"
        ]
    return metrics, per_example


def evaluate_job(
    job,
    *,
    data_dir,
    model_dir,
    metrics_path,
    threads: dict | None = None,
    teacher_dir=None,
    rule: str = "evaluate",
    evaluation: dict | None = None,
) -> dict:
    """Evaluate a trained job, add the numbers to its MLflow run, write the metrics JSON.

    The metrics JSON is flat: dataset, flow, builder, seed, objective, teacher, n_params,
    test_loglik, test_loglik_se, n_test, true_test_loglik, train_seconds, best_val_loglik /
    final_loss (from ``train.json``), bits_per_dim and test_loglik_model (images), elbo /
    kl_to_target / kl_to_target_se / ess (VI), teacher_test_loglik / kl_to_teacher (students),
    loglik_file, mlflow_run_id, model_dir and the threads used. Missing quantities are ``null``.
    Timing is not measured here (the serial ``time_models`` step does it).

    Beside it, ``loglik_file`` (:func:`per_example_path`, a name in the same folder) holds the
    per-example test log-likelihoods, float64 nats in the space of ``test_loglik`` (empty for
    energy targets, which have no test set); it is also logged to the MLflow run.
    """
    import numpy as np

    from flows_tf import datasets, evaluate

    ev = {**EVALUATION_DEFAULTS, **(evaluation or {})}
    model_dir = Path(model_dir)
    summary = json.loads((model_dir / "train.json").read_text())
    if summary.get("job_key") != job.key:
        raise ValueError(
            f"{model_dir}/train.json belongs to {summary.get('job_key')!r}, not {job.key!r}"
        )
    flow = modelio.load_flow(_read_spec(model_dir), model_dir / "model", seed=job.seed)
    metrics_path = Path(metrics_path)
    loglik_path = per_example_path(metrics_path)
    nan = float("nan")
    metrics = {
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
        "loglik_file": loglik_path.name,
        **dict.fromkeys(("test_loglik", "test_loglik_se", "true_test_loglik", "bits_per_dim"), nan),
        **dict.fromkeys(("elbo", "kl_to_target", "kl_to_target_se", "ess"), nan),
        **dict.fromkeys(("teacher_test_loglik", "kl_to_teacher"), nan),
        "threads": dict(threads or {}),
        "train_threads": summary.get("threads", {}),
    }
    _say(f"evaluating {job.key}")
    if job.objective == "vi":
        target = datasets.energy_target(job.dataset)
        metrics.update(evaluate.vi_metrics(flow, target, n=int(ev["vi_samples"]), seed=job.seed))
        per_example = np.zeros(0, np.float64)
    else:
        meta, data = _load_data(job, data_dir, ("test",))
        found, per_example = _data_metrics(job, flow, data["test"], meta, ev, teacher_dir)
        metrics.update(found)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(loglik_path, np.asarray(per_example, np.float64))
    _write_json(metrics_path, metrics)
    with tracking.reopen_run(metrics["mlflow_run_id"], rule=rule) as run:
        numeric = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed"
        }
        run.log_metrics(numeric, step=int(summary.get("steps", 0)), flush=True)
        run.set_tags({"metrics_file": str(metrics_path)})
        run.log_artifact(metrics_path)
        run.log_artifact(loglik_path)
    _say(f"{job.key}: test_loglik {metrics['test_loglik']}, kl_to_target {metrics['kl_to_target']}")
    return metrics


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `flows-tf train|evaluate` or the Snakemake workflow")
