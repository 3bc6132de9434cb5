"""Snakemake script: train the seeds of one (dataset, flow) variant."""

from flows_tf import jobs, paths, runtime  # none imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    runtime.compile_cache(paths.XLA_CACHE)  # before anything starts TensorFlow
    threads = runtime.configure(sm.threads)
    jobs.train_variant(
        **jobs.variant_arguments(sm),
        experiment=sm.params.experiment,
        threads=threads,
        evaluation=sm.config.get("evaluation"),
        metrics_paths=list(sm.params.metrics),  # its evaluation mirrored into MLflow as published
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
