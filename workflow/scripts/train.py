"""Snakemake script: train the seeds of one or more variants in one process."""

from flows_tf import jobs, paths, runtime  # none imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    runtime.compile_cache(paths.XLA_CACHE)  # before anything starts TensorFlow
    threads = runtime.configure(sm.threads)
    jobs.train_variants(
        **jobs.variants_arguments(sm),
        experiment=sm.params.experiment,
        threads=threads,
        evaluation=sm.config.get("evaluation"),
        metrics_paths=sm.params.metrics,  # per variant: its evaluation mirrored into MLflow
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
