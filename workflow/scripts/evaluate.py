"""Snakemake script: evaluate one trained job and write its metrics JSON."""

from flows_tf import jobs, runtime  # neither imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    jobs.evaluate_job(
        **jobs.rule_arguments(sm),
        metrics_path=sm.output[0],
        threads=runtime.thread_plan(sm.threads),  # applied only if it evaluates afresh
        evaluation=sm.params.evaluation,
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
