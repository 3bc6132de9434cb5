"""One benchmark job end to end: the science writes the run record as files, then a small step
mirrors that record into the job's MLflow run.

Glue only: :class:`flows_tf.experiment.Job` says what to run, :mod:`flows_tf.datasets` gives
the data, :func:`flows_tf.flows.build_flow` the model, :func:`flows_tf.train.fit` trains it,
:mod:`flows_tf.evaluate` measures it and :mod:`flows_tf.tracking` holds the MLflow run.

- :mod:`.training` and :mod:`.evaluation`, the science, need no tracking store:
  :func:`train_model` (on :func:`load_train_inputs`) and :func:`evaluate_model` write the
  record files and return the summary / the metrics.
- :mod:`.mirror` opens a job's run from the job's plain data (:func:`open_run`: key, config
  hash, tags) and copies a record into it (:func:`mirror_training`, :func:`mirror_evaluation`).
- :mod:`.draft`: the training job evaluates its model in the same process and mirrors that
  evaluation into its run; the evaluate step publishes it when nothing it read has changed
  (else it evaluates afresh and mirrors that).
- :mod:`.record` reads and writes the files; :mod:`.logs` sends a job's output to its log.
- Here: :func:`train_job` and :func:`evaluate_job`, as the CLI runs them, and
  :func:`train_variant` and :func:`evaluate_variant`, a variant's seeds in one process, and
  :func:`train_variants`, several variants in one process, as the Snakemake rules do.

The record of a job (``model_dir = results/models/{dataset}/{flow}/seed{seed}``):
``train.json`` (summary), ``history.csv`` (step, epoch, train_loss, val_loglik),
``samples.npy``, ``density_grid.npz`` (2-D only: xs, ys, logp), ``model/`` (final weights) and
``model_spec.json``; ``checkpoints/`` (resume; they hold the history so far),
``mlflow_run.json`` and ``evaluation/`` (the training job's own evaluation, :mod:`.draft`); and
the flat metrics JSON ``results/metrics/{dataset}/{flow}/seed{seed}.json``
with the per-example values beside it.

Call :func:`flows_tf.runtime.configure` before these functions start TensorFlow.

Example (needs prepared data and a tracking store, so not run as a doctest)::

    job = experiment.make_job(config, "two_moons", "maf", 0)
    train_job(job, data_dir="results/data/two_moons", model_dir=md, experiment="x")
    inputs = load_train_inputs(job, "results/data/two_moons")
    summary = train_model(job, inputs, md)  # the same files, no tracking store
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows_tf import experiment as _experiment
from flows_tf import runtime, tracking
from flows_tf.jobs import draft
from flows_tf.jobs.evaluation import EVALUATION_DEFAULTS, evaluate_model, measurement_settings
from flows_tf.jobs.logs import log_to, say
from flows_tf.jobs.mirror import (
    job_params,
    log_evaluation,
    mirror_evaluation,
    mirror_training,
    open_run,
    run_tags,
)
from flows_tf.jobs.record import HISTORY_COLUMNS, per_example_path, read_history
from flows_tf.jobs.training import TrainInputs, load_train_inputs, next_seed_inputs, train_model

if TYPE_CHECKING:
    from flows_tf.experiment import Job

__all__ = [
    "EVALUATION_DEFAULTS",
    "HISTORY_COLUMNS",
    "TrainInputs",
    "evaluate_job",
    "evaluate_model",
    "evaluate_variant",
    "job_params",
    "load_train_inputs",
    "log_to",
    "mirror_evaluation",
    "mirror_training",
    "open_run",
    "per_example_path",
    "read_history",
    "run_tags",
    "train_job",
    "train_model",
    "train_variant",
    "train_variants",
    "variant_arguments",
    "variants_arguments",
]


def variants_arguments(sm: Any) -> dict:
    """What a Snakemake train or evaluate rule hands to :func:`train_variants`: the jobs of its
    variants (``params.variants``, (dataset, flow) pairs of one data set or of energy targets,
    each with every seed of ``params.seeds``), their model folders and teachers, variant by
    variant in the order of its files (variant, then seed)."""
    seeds, pairs = [int(s) for s in sm.params.seeds], [tuple(p) for p in sm.params.variants]
    models = sm.output.model if "model" in sm.output.keys() else sm.input.model
    teachers = list(sm.input.teacher) if "teacher" in sm.input.keys() else [None] * len(models)
    if len(models) != len(pairs) * len(seeds):
        raise ValueError(f"{len(models)} model files for variants {pairs} x seeds {seeds}")

    def by_variant(items: Sequence) -> list[list]:
        return [list(items[i : i + len(seeds)]) for i in range(0, len(items), len(seeds))]

    def jobs_of(dataset: str, flow: str) -> list[Job]:
        return [_experiment.make_job(sm.config, dataset, flow, s) for s in seeds]

    return {
        "variants": [jobs_of(*pair) for pair in pairs],
        "data_dir": Path(sm.input.meta).parent if "meta" in sm.input.keys() else None,
        "model_dirs": by_variant([Path(f).parent for f in models]),
        "teacher_dirs": by_variant([None if t is None else Path(t).parent for t in teachers]),
        "rule": sm.rule,
    }


def variant_arguments(sm: Any) -> dict:
    """:func:`variants_arguments` of a rule with one variant, as :func:`train_variant` and
    :func:`evaluate_variant` take them."""
    args = variants_arguments(sm)
    ((variant,), (model_dirs,), (teacher_dirs,)) = (
        args.pop("variants"), args.pop("model_dirs"), args.pop("teacher_dirs")
    )  # fmt: skip
    return args | {"variant": variant, "model_dirs": model_dirs, "teacher_dirs": teacher_dirs}


def train_job(
    job: Job,
    *,
    data_dir: str | Path | None,
    model_dir: str | Path,
    experiment: str,
    threads: dict | None = None,
    teacher_dir: str | Path | None = None,
    rule: str = "train",
    evaluation: dict | None = None,
    inputs: TrainInputs | None = None,
    shared: dict | None = None,
    metrics_path: str | Path | None = None,
) -> dict:
    """Train one job into its MLflow run: :func:`train_model`, then :func:`mirror_training`;
    then its evaluation (:mod:`.draft`), mirrored into the run too when ``metrics_path``.

    Args:
        job: the :class:`~flows_tf.experiment.Job`.
        data_dir: ``results/data/{dataset}`` (ignored for energy targets).
        model_dir: the job's model folder (created).
        experiment: MLflow experiment name (created beforehand by ``init-mlflow``).
        threads: what :func:`flows_tf.runtime.configure` returned, recorded with the run.
        teacher_dir: the teacher's model folder (distillation only).
        rule: the Snakemake rule, recorded as a tag.
        evaluation: overrides of :data:`EVALUATION_DEFAULTS` (samples and density grid).
        inputs: the job's :class:`TrainInputs`, if already read (default: read them here).
        shared: passed to :func:`train_model` (the seeds of a variant in one process).
        metrics_path: where the evaluate step will publish the evaluation (None: it mirrors
            the evaluation itself).

    Returns:
        the summary written to ``train.json``. Bad inputs stop the job before its run opens;
        a fresh run starts from scratch; a resumed run (a killed job rerun with the same config
        and data) continues its checkpoints.
    """
    threads = dict(threads or {})
    inputs = inputs or load_train_inputs(job, data_dir, teacher_dir)
    shape = inputs.event_shape
    say(f"job {job.key}: {job.builder} {job.hparams} on {job.dataset} {shape}, threads {threads}")
    with open_run(job, experiment, model_dir, rule=rule, data_hash=inputs.data_hash) as run:
        state = "resumed" if run.resumed else "new"
        say(f"MLflow run {run.run_id} ({state}) at {tracking.tracking_uri()}")
        run.log_params(job_params(job, threads))
        if inputs.meta is not None:
            run.log_dataset(inputs.meta, context="train", source=inputs.source)
        summary = train_model(
            job,
            inputs,
            model_dir,
            threads=threads,
            evaluation=evaluation,
            run_id=run.run_id,
            resume=run.resumed,  # a fresh run never continues stale checkpoints
            log=lambda step, metrics: run.log_metrics(metrics, step=step),
            shared=shared,
        )
        mirror_training(run, model_dir)
        say(f"trained {job.key} in {summary['train_seconds']:.1f} s ({summary['steps']} steps)")
        measured = {"data_dir": data_dir, "model_dir": model_dir, "teacher_dir": teacher_dir}
        measured |= {"threads": threads, "evaluation": evaluation}
        _draft_evaluation(job, run, metrics_path, measured)
    return summary


def _draft_evaluation(
    job: Job, run: tracking.RunLogger, metrics_path: str | Path | None, measured: dict
) -> None:
    """The training job's own evaluation (:func:`draft.write_draft`) and, when it knows where
    the evaluate step will publish it, its MLflow record in the open run, as the files to be
    published (:func:`draft.staged`): that step then needs no MLflow. An error in either is
    reported and left to the evaluate step, which evaluates or mirrors itself."""
    key, model_dir = _fingerprint(**measured), measured["model_dir"]
    evaluated = draft.write_draft(
        lambda path: evaluate_model(job, metrics_path=path, **measured),
        model_dir=model_dir,
        fingerprint_of=key,
    )
    if not evaluated or metrics_path is None:
        return
    try:
        with draft.staged(model_dir, metrics_path, key) as files:
            log_evaluation(run, files, metrics_file=metrics_path)
    except Exception as err:  # noqa: BLE001  (the evaluate step mirrors it then)
        say(f"mirroring the evaluation failed, the evaluate step will redo it: {err!r}")
        return
    draft.mark_mirrored(model_dir, metrics_path, key)


def _each(work: Callable[..., Any], what: str, names: Sequence[str], *items: Sequence) -> list:
    """``work(*its items)`` for each of ``names`` (the ``what``: seeds or variants), in order.
    One that fails does not stop the next ones; the call then raises ``RuntimeError`` naming
    them."""
    done, failed = [], []
    for name, *args in zip(names, *items, strict=True):
        try:
            done.append(work(*args))
        except Exception as err:  # noqa: BLE001  (the others still run)
            say(f"{name} failed:\n{traceback.format_exc()}")
            failed.append(f"{name}: {err!r}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(names)} {what} failed: " + "; ".join(failed))
    return done


def _each_seed(work: Callable[..., dict], variant: Sequence[Job], *per_seed: Sequence) -> list:
    """:func:`_each` seed of a variant: ``work(job, *its items of per_seed)``."""
    return _each(work, "seeds", [job.key for job in variant], variant, *per_seed)


def train_variant(
    variant: Sequence[Job],
    *,
    data_dir: str | Path | None,
    model_dirs: Sequence[str | Path],
    teacher_dirs: Sequence[str | Path | None],
    metrics_paths: Sequence[str | Path | None] | None = None,
    **common: Any,
) -> list[dict]:
    """Train the seeds of one variant in one process, each into its own run by :func:`train_job`
    (``common``: its other arguments): one start of TensorFlow and MLflow, the data read once,
    one compiled block of steps for every seed of a reseedable objective
    (:func:`flows_tf.train.fit`'s ``shared``), and the evaluation's compiled functions traced
    once (:func:`flows_tf.evaluate.reuse_traces`), to the numbers of separate jobs.

    ``metrics_paths``: where the evaluate step publishes each seed's evaluation (see
    :func:`train_job`). A seed that fails does not stop the next ones; the call then raises
    ``RuntimeError`` naming every failed seed. A rerun resumes each seed from its checkpoints
    (a finished one reloads).
    """
    from flows_tf import evaluate  # TensorFlow: the training job starts it anyway

    shared, loaded = {}, [None]

    def train_seed(
        job: Job, model_dir: Path, teacher_dir: Path | None, metrics: Path | None
    ) -> dict:
        loaded[0] = next_seed_inputs(job, loaded[0], data_dir, teacher_dir)
        return train_job(job, data_dir=data_dir, model_dir=model_dir, teacher_dir=teacher_dir,
                         metrics_path=metrics, inputs=loaded[0], shared=shared,
                         **common)  # fmt: skip

    metrics_paths = metrics_paths or [None] * len(variant)
    with evaluate.reuse_traces():  # samples, density grid and evaluation traced once too
        return _each_seed(train_seed, variant, model_dirs, teacher_dirs, metrics_paths)


def train_variants(
    variants: Sequence[Sequence[Job]],
    *,
    model_dirs: Sequence[Sequence[str | Path]],
    teacher_dirs: Sequence[Sequence[str | Path | None]],
    metrics_paths: Sequence[Sequence[str | Path | None]] | None = None,
    **common: Any,
) -> list[list[dict]]:
    """:func:`train_variant` for each of several variants (of one data set, or energy targets),
    one after another in one process: one start of TensorFlow and MLflow for all of them, each
    variant with its own compiled steps and traces (``common``: the other arguments). The
    per-variant arguments are lists by variant, as :func:`variants_arguments` gives them. A
    variant that fails does not stop the next ones; the call then raises ``RuntimeError``
    naming it, and a rerun resumes each seed from its checkpoints (a finished one reloads)."""
    metrics_paths = metrics_paths or [None] * len(variants)

    def train_one(variant: Sequence[Job], dirs: Sequence, teachers: Sequence, metrics: Any) -> list:
        return train_variant(variant, model_dirs=dirs, teacher_dirs=teachers,
                             metrics_paths=metrics, **common)  # fmt: skip

    names = [f"{v[0].dataset}/{v[0].flow}" for v in variants]
    return _each(train_one, "variants", names, variants, model_dirs, teacher_dirs, metrics_paths)


def evaluate_variant(
    variant: Sequence[Job],
    *,
    model_dirs: Sequence[str | Path],
    metrics_paths: Sequence[str | Path],
    teacher_dirs: Sequence[str | Path | None],
    **common: Any,
) -> list[dict]:
    """:func:`evaluate_job` for each seed of a variant in one process (``common``: its other
    arguments); a failing seed stops neither the next ones nor the error, as
    :func:`train_variant`."""

    def evaluate_seed(job: Job, model_dir: Path, metrics_path: Path, teacher_dir: Path) -> dict:
        return evaluate_job(job, model_dir=model_dir, metrics_path=metrics_path,
                            teacher_dir=teacher_dir, **common)  # fmt: skip

    return _each_seed(evaluate_seed, variant, model_dirs, metrics_paths, teacher_dirs)


def _fingerprint(*, evaluation: dict | None, **inputs: object) -> str:
    """:func:`draft.fingerprint` of an evaluation with these keyword arguments."""
    keys = ("model_dir", "data_dir", "teacher_dir", "threads")
    ev = measurement_settings(evaluation)
    return draft.fingerprint(evaluation=ev, **{k: inputs.get(k) for k in keys})


def evaluate_job(job: Job, *, rule: str = "evaluate", **inputs: object) -> dict:
    """Evaluate a trained job into its MLflow run: publish the training job's own evaluation
    if its fingerprint is this one's (:mod:`.draft`), else :func:`evaluate_model` (``inputs``
    are its keyword arguments; it writes the metrics JSON and per-example values); then
    :func:`mirror_evaluation` under ``rule``, unless the training job mirrored what was
    published (then MLflow is not even imported). ``threads`` may be a
    :func:`~flows_tf.runtime.thread_plan`: it is applied only if TensorFlow has to run."""
    key, metrics_path = _fingerprint(**inputs), inputs["metrics_path"]
    metrics = draft.publish(inputs["model_dir"], metrics_path, key)
    mirrored = False
    if metrics is None:
        if inputs.get("threads"):  # TensorFlow starts here, not to publish a draft
            inputs["threads"] = runtime.apply(inputs["threads"])
        metrics = evaluate_model(job, **inputs)
    else:
        mirrored = draft.is_mirrored(inputs["model_dir"], metrics_path, key)
        where = f" and mirrored into MLflow run {metrics['mlflow_run_id']}" if mirrored else ""
        say(f"{job.key}: published the evaluation the training job made (fingerprint {key}){where}")
    if not mirrored:
        mirror_evaluation(metrics_path, rule=rule)
    say(f"{job.key}: test_loglik {metrics['test_loglik']}, kl_to_target {metrics['kl_to_target']}")
    return metrics


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `flows-tf train|evaluate` or the Snakemake workflow")
