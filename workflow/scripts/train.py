"""Snakemake script: train one (dataset, flow, seed) job."""

from flows_tf import jobs, paths, runtime  # none imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    runtime.compile_cache(paths.XLA_CACHE)  # before anything starts TensorFlow
    threads = runtime.configure(sm.threads)
    jobs.train_job(
        **jobs.rule_arguments(sm),
        experiment=sm.params.experiment,
        threads=threads,
        evaluation=sm.config.get("evaluation"),
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
