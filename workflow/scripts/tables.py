"""Snakemake script: the tidy runs table and the comparison tables (flows_tf.tables)."""

import json
from pathlib import Path

from flows_tf import jobs, tables

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    runs = tables.runs_frame(
        sm.input.metrics, expected=sm.params.expected_runs, timing=sm.input.timing
    )
    tables.write_all(
        runs,
        sm.output.runs,
        expected_seeds=sm.params.expected_seeds,
        timing_conditions=json.loads(Path(sm.input.conditions).read_text()),
    )
