"""Snakemake script: time every trained model serially, a fresh process per data set
(flows_tf.timing)."""

import os

from flows_tf import jobs, runtime, timing  # none imports TensorFlow

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    # TF's pools from the cores the machine has (the rule claims all of Snakemake's cores)
    threads = runtime.configure(min(int(sm.threads), os.cpu_count() or 1))
    evaluation = {**jobs.EVALUATION_DEFAULTS, **(sm.params.evaluation or {})}
    timing.run_timing(
        sm.input.metrics,
        sm.output.timing,
        sm.output.conditions,
        n=int(evaluation["timing_n"]),
        repeats=int(evaluation["timing_repeats"]),
        threads=threads,
    )
runtime.exit_now()  # outputs are closed: skip TensorFlow's teardown
