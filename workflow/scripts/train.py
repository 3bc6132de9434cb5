"""Snakemake script: train one (dataset, flow, seed) job."""

from pathlib import Path

from flows_tf import experiment, jobs, runtime  # none of these imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    threads = runtime.configure(sm.threads)  # before anything starts TensorFlow
    w = sm.wildcards
    job = experiment.make_job(sm.config, w.dataset, w.flow, int(w.seed))
    jobs.train_job(
        job,
        data_dir=Path(sm.input.meta).parent if "meta" in sm.input.keys() else None,
        model_dir=sm.params.model_dir,
        experiment=sm.params.experiment,
        threads=threads,
        teacher_dir=Path(sm.input.teacher).parent if "teacher" in sm.input.keys() else None,
        rule=sm.rule,
        evaluation=sm.config.get("evaluation"),
    )
