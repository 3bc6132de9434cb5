"""Snakemake script: train one (dataset, flow, seed) job."""

from flows_tf import jobs, runtime  # neither imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    threads = runtime.configure(sm.threads)  # before anything starts TensorFlow
    jobs.train_job(
        **jobs.rule_arguments(sm),
        experiment=sm.params.experiment,
        threads=threads,
        evaluation=sm.config.get("evaluation"),
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
