"""Snakemake script: evaluate the trained seeds of one variant and write their metrics JSON."""

from flows_tf import jobs, runtime  # neither imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    jobs.evaluate_variant(
        **jobs.variant_arguments(sm),
        metrics_paths=list(sm.output.metrics),
        threads=runtime.thread_plan(sm.threads),  # applied only if it evaluates afresh
        evaluation=sm.params.evaluation,
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
